-- POST a prepared body (JSON, or a binary tensor) read from a file.
-- Environment: WRK_BODY          file with the exact request body (required)
--              WRK_CONTENT_TYPE  its Content-Type (default application/json)
--              WRK_HEADER_NAME / WRK_HEADER_VALUE  one extra header, e.g. the KServe V2 binary
--                                extension's Inference-Header-Content-Length
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")

wrk.method = "POST"
wrk.body = read_file(assert(os.getenv("WRK_BODY"), "set WRK_BODY"))
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/json"
local extra = os.getenv("WRK_HEADER_NAME")
if extra and extra ~= "" then
  wrk.headers[extra] = assert(os.getenv("WRK_HEADER_VALUE"), "set WRK_HEADER_VALUE")
end
