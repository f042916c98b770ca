-- POST a multipart/form-data body with one or many image files under one field.
-- Environment: WRK_FILE   image file to upload (required)
--              WRK_COUNT  how many copies of it per request (default 1: a batch when > 1)
--              WRK_FIELD  form field name (default "file")
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")

local path = assert(os.getenv("WRK_FILE"), "set WRK_FILE")
local count = tonumber(os.getenv("WRK_COUNT") or "1")
local field = os.getenv("WRK_FIELD") or "file"
local data = read_file(path)
local name = path:match("([^/]+)$")
local ext = (name:match("%.(%w+)$") or "bin"):lower()
local types = { png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", bmp = "image/bmp" }
local boundary = "----fcbench7d4a1e0b9c2f"

local parts = {}
for i = 1, count do
  parts[#parts + 1] = "--" .. boundary .. "\r\n" ..
    'Content-Disposition: form-data; name="' .. field .. '"; filename="' .. i .. "-" .. name .. '"\r\n' ..
    "Content-Type: " .. (types[ext] or "application/octet-stream") .. "\r\n\r\n" .. data .. "\r\n"
end
parts[#parts + 1] = "--" .. boundary .. "--\r\n"

wrk.method = "POST"
wrk.body = table.concat(parts)
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
