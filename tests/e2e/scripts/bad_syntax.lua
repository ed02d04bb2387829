local ls = require("luastream")
local app = ls.app{ name = "syntax" }
local x = = 1
