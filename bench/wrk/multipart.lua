-- POST a multipart/form-data body with one or many image files under one field.
-- Environment: WRK_FILE        image file to upload (required)
--              WRK_COUNT       how many copies of it per request (default 1: a batch when > 1)
--              WRK_FIELD       form field name (default "file")
--              WRK_BOUNDARIES  distinct boundaries to rotate through (default 1024, fewer when the
--                              bodies are large; 1 reproduces a fixed boundary)
--              WRK_CLOSE       "1": send "Connection: close", a new TCP connection per request
-- Browsers, curl and requests send a new boundary with every request. A parser that compiles a
-- regex per boundary (Werkzeug's) hides that cost behind Python's 512-entry regex cache when a
-- benchmark repeats one boundary, so each thread rotates through more boundaries than that.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")

local path = assert(os.getenv("WRK_FILE"), "set WRK_FILE")
local count = tonumber(os.getenv("WRK_COUNT") or "1")
local field = os.getenv("WRK_FIELD") or "file"
local data = read_file(path)
local name = path:match("([^/]+)$")
local ext = (name:match("%.(%w+)$") or "bin"):lower()
local types = { png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", bmp = "image/bmp" }
local POOL_BYTES = 32 * 1024 * 1024 -- per thread

local function body(boundary)
  local parts = {}
  for i = 1, count do
    parts[#parts + 1] = "--" .. boundary .. "\r\n" ..
      'Content-Disposition: form-data; name="' .. field .. '"; filename="' .. i .. "-" .. name .. '"\r\n' ..
      "Content-Type: " .. (types[ext] or "application/octet-stream") .. "\r\n\r\n" .. data .. "\r\n"
  end
  parts[#parts + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(parts)
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local pool, next_request = {}, 1
function init(args)
  local size = #body("x")
  local wanted = tonumber(os.getenv("WRK_BOUNDARIES") or "1024")
  local n = math.max(1, math.min(wanted, math.floor(POOL_BYTES / size)))
  for i = 1, n do
    local boundary = string.format("----fcbench%02d%06d%08x", thread_id or 0, i, math.random(0, 0x7fffffff))
    local headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }
    if os.getenv("WRK_CLOSE") == "1" then
      headers["Connection"] = "close"
    end
    pool[i] = wrk.format("POST", nil, headers, body(boundary))
  end
end

function request()
  local r = pool[next_request]
  next_request = next_request % #pool + 1
  return r
end
