-- GET the URL as given (path and query); only the shared JSON report.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")
