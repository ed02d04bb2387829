local ls = require("luastream")

local app = ls.app{ name = "bogus-opt", bogus = 1 }
