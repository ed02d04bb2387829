local ls = require("luastream")
ls.app{ name = "raises" }
error("boom at load")
