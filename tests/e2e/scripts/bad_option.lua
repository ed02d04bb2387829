local ls = require("luastream")

ls.app{ name = "bogus-opt", bogus = 1 }
