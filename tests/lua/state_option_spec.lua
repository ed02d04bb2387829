-- The app option state_cache_keys sets luastream.state's cache limit.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local state = require("luastream.state")

local SRC = 'local ls = require("luastream")\nlocal app = ls.app%s\n' ..
  'app:dataframe(app:topic("in")):to_topic(app:topic("out"))\n'

describe("state_cache_keys", function()
  after_each(function() state.set_cache_limit(state.DEFAULT_CACHE_LIMIT) end)

  it("defaults to the documented 100000 keys", function()
    H.load_source(SRC:format("{}"), {}, "cache.lua")
    assert.equal(100000, state.DEFAULT_CACHE_LIMIT)
    assert.equal(100000, state.cache_limit())
  end)

  it("is set from the app option and from --set", function()
    H.load_source(SRC:format("{ state_cache_keys = 500 }"), {}, "cache.lua")
    assert.equal(500, state.cache_limit())
    H.load_source(SRC:format("{}"), { set = { state_cache_keys = "7" } }, "cache.lua")
    assert.equal(7, state.cache_limit())
  end)

  it("refuses a limit that is not a whole number >= 1", function()
    local err = H.error_of(H.load_source, SRC:format("{ state_cache_keys = 0.5 }"), {}, "cache.lua")
    assert.matches("state_cache_keys' must be a whole number >= 1", err, 1, true)
  end)
end)
