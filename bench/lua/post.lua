-- POST the body in the BODY_FILE environment variable (if any) with Basic credentials; with
-- IDEMPOTENT=1, each request carries a fresh Idempotency-Key, as the client library sends them.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("AUTH_HEADER")
local path = os.getenv("BODY_FILE")
if path and path ~= "" then
  local file = assert(io.open(path, "rb"))
  wrk.body = file:read("*a")
  file:close()
end

if os.getenv("IDEMPOTENT") == "1" then
  local sent = 0
  local run = tostring(os.time())
  request = function()
    sent = sent + 1
    wrk.headers["Idempotency-Key"] = run .. "-" .. sent
    return wrk.format()
  end
end
