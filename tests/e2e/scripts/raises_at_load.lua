local ls = require("luastream")
local app = ls.app{ name = "raises" }
error("boom at load")
