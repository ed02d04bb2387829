-- state:set(k, v, { ttl = ms }): expiry by the state's clock (core.now_ms,
-- the clock behind ls.now_ms), expired entries reading as absent, the expiry
-- handed to checkpoints as rt.changes.expire[j], and bad options.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local rt = H.rt
local core = H.core
local state = require("luastream.state")

local KV = H.header .. [[
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf = sdf:apply(function(row, state)
  if row.op == "set" then state:set(row.k, row.v, row.ttl and { ttl = row.ttl } or nil) end
  if row.op == "del" then state:delete(row.k) end
  if row.op == "opts" then state:set(row.k, 1, row.opts) end
  if row.op == "fail" then state:set(row.k, row.v, { ttl = row.ttl }) error("boom") end
  return { exists = state:exists(row.k), v = state:get(row.k, "dflt") }
end, { stateful = true })
sdf:to_topic(app:topic("out"))
]]
local OPTS_LINE = 7 -- the state:set line of op "opts" in KV

local clock
local saved_now, saved_load

-- One row of KV for message key "m" (or key).
local function op(t, key)
  return { t, key = key or "m" }
end

local function values(list)
  local outs = H.run(list)
  local v = {}
  for j, o in ipairs(outs) do v[j] = o.val end
  return v
end

-- The taken changes as { [state_key] = { value or false, expire } }.
local function take()
  local n = rt.take_state_changes()
  local res = {}
  for j = 1, n do
    local _, sk = state.split_key(rt.changes.key[j])
    local v = rt.changes.val[j]
    res[sk] = { v and core.decode("msgpack", v) or false, rt.changes.expire[j] }
  end
  return res, n
end

describe("state ttl", function()
  before_each(function()
    clock = 1000
    saved_now, saved_load = core.now_ms, core.state_load
    core.now_ms = function() return clock end
    core.state_load = nil
    H.load_source(KV)
    rt.take_state_changes() -- nothing left from other specs
  end)

  after_each(function()
    core.now_ms, core.state_load = saved_now, saved_load
  end)

  it("reads an entry until ttl ms after the set, then as absent", function()
    assert.same({ { exists = true, v = 1 } }, values({ op({ op = "set", k = "x", v = 1, ttl = 500 }) }))
    clock = 1499
    assert.same({ { exists = true, v = 1 } }, values({ op({ op = "get", k = "x" }) }))
    clock = 1500
    assert.same({ { exists = false, v = "dflt" } }, values({ op({ op = "get", k = "x" }) }))
    -- other keys of the same message key are not affected
    assert.same({ { exists = true, v = 2 } }, values({ op({ op = "set", k = "y", v = 2 }) }))
  end)

  it("hands the expiry to the checkpoint in changes.expire (0: none)", function()
    values({ op({ op = "set", k = "a", v = "A", ttl = 60000 }), op({ op = "set", k = "b", v = "B" }),
      op({ op = "set", k = "c", v = "C", ttl = 10 }), op({ op = "del", k = "c" }) })
    local changes, n = take()
    assert.same(3, n)
    assert.same({ a = { "A", 61000 }, b = { "B", 0 }, c = { false, 0 } }, changes)
    assert.same(n, #rt.changes.expire)
  end)

  it("a set without ttl removes the expiry; a new ttl replaces it", function()
    values({ op({ op = "set", k = "a", v = 1, ttl = 100 }), op({ op = "set", k = "a", v = 2 }),
      op({ op = "set", k = "b", v = 1, ttl = 100 }), op({ op = "set", k = "b", v = 2, ttl = 5000 }) })
    clock = 2000
    assert.same({ { exists = true, v = 2 }, { exists = true, v = 2 } },
      values({ op({ op = "get", k = "a" }), op({ op = "get", k = "b" }) }))
    assert.same({ a = { 2, 0 }, b = { 2, 6000 } }, take())
  end)

  it("takes an entry that expired before the checkpoint as a delete; only written entries", function()
    values({ op({ op = "set", k = "a", v = 1, ttl = 10 }), op({ op = "set", k = "b", v = 1 }) })
    clock = 1020
    assert.same({ a = { false, 0 }, b = { 1, 0 } }, take())
    values({ op({ op = "set", k = "c", v = 1, ttl = 10 }), op({ op = "set", k = "b", v = 2 }) })
    assert.same({ b = { 2, 0 }, c = { 1, 1030 } }, take())
    clock = 1040
    values({ op({ op = "set", k = "b", v = 3 }) }) -- c expired in the store: its sweep deletes it
    assert.same({ b = { 3, 0 } }, take())
  end)

  it("drops expired entries of a key that stays cached from the cache at a checkpoint", function()
    for n = 1, 300 do -- e.g. de-duplication: an entry per event id under one message key, kept 10 ms
      values({ op({ op = "set", k = "e" .. n, v = true, ttl = 10 }) })
      take()
      clock = clock + 100 -- every entry so far has expired
    end
    local st = state.stores()[1]
    state.at(st, 0, "m", 1)
    local held = {}
    for k in pairs(st.kt) do if type(k) == "string" then held[#held + 1] = k end end
    assert.same({ "e300" }, held) -- the last one: no checkpoint since it expired
  end)

  it("rounds a fractional ttl up and treats ttl = 0 as expired at once", function()
    values({ op({ op = "set", k = "a", v = 1, ttl = 0.25 }) })
    assert.same({ a = { 1, 1001 } }, take())
    assert.same({ { exists = false, v = "dflt" } }, values({ op({ op = "set", k = "z", v = 1, ttl = 0 }) }))
  end)

  it("keeps the expiry of entries loaded from the store", function()
    core.state_load = function(_, _, kb)
      if kb ~= "m" then return {} end
      return { old = "O", fresh = "F", plain = "P" }, { old = 900, fresh = 5000 }
    end
    assert.same({ { exists = false, v = "dflt" }, { exists = true, v = "F" }, { exists = true, v = "P" } },
      values({ op({ op = "get", k = "old" }), op({ op = "get", k = "fresh" }), op({ op = "get", k = "plain" }) }))
    values({ op({ op = "set", k = "new", v = "N" }) })
    -- only the written entry is taken: the others stay as the store has them, expiries included
    assert.same({ new = { "N", 0 } }, take())
    clock = 5000
    assert.same({ { exists = false, v = "dflt" } }, values({ op({ op = "get", k = "fresh" }) }))
  end)

  it("rolls back the value and the expiry of a row that fails", function()
    values({ op({ op = "set", k = "a", v = 1, ttl = 100 }), op({ op = "set", k = "b", v = 1 }) })
    take()
    local err = H.error_of(H.run, { op({ op = "fail", k = "a", v = 2, ttl = 100000 }) })
    assert.matches("boom", err, 1, true)
    err = H.error_of(H.run, { op({ op = "fail", k = "b", v = 2, ttl = 5 }) })
    assert.matches("boom", err, 1, true)
    clock = 1050
    assert.same({ { exists = true, v = 1 }, { exists = true, v = 1 } },
      values({ op({ op = "get", k = "a" }), op({ op = "get", k = "b" }) }))
    clock = 1100
    assert.same({ { exists = false, v = "dflt" }, { exists = true, v = 1 } },
      values({ op({ op = "get", k = "a" }), op({ op = "get", k = "b" }) }))
  end)

  it("raises bad options at the caller's line", function()
    local function err_of(opts)
      return H.error_of(H.run, { op({ op = "opts", k = "x", opts = opts }) })
    end
    local at = "app.lua:" .. OPTS_LINE .. ": state:set: "
    assert.matches(at .. "ttl must be a number of milliseconds >= 0, got -1", err_of({ ttl = -1 }), 1, true)
    assert.matches(at .. "ttl must be a number of milliseconds >= 0, got string", err_of({ ttl = "10" }), 1, true)
    assert.matches(at .. "ttl must be a number of milliseconds >= 0, got nan", err_of({ ttl = 0 / 0 }), 1, true)
    assert.matches(at .. "ttl must be a number of milliseconds >= 0, got inf", err_of({ ttl = math.huge }), 1, true)
    assert.matches(at .. "unknown option 'tll' (known: ttl)", err_of({ tll = 5 }), 1, true)
    assert.matches(at .. "unknown option 'extra' (known: ttl)", err_of({ ttl = 5, extra = 1 }), 1, true)
    assert.matches(at .. "options must be a table like { ttl = 60000 }, got number", err_of(5), 1, true)
    -- a failed set changes nothing
    assert.same({}, take())
    -- {} is no ttl
    assert.same({ { exists = true, v = 1 } }, values({ op({ op = "opts", k = "x", opts = {} }) }))
    assert.same({ x = { 1, 0 } }, take())
  end)

  it("limits the key length of entries with a ttl (LMDB's index key)", function()
    local long = string.rep("k", 400)
    local at = "app.lua:" .. OPTS_LINE .. ": state:set: "
    local err = H.error_of(H.run, { op({ op = "opts", k = string.rep("s", 99), opts = { ttl = 1 } }, long) })
    assert.matches(at .. "an entry with a ttl needs message key and state key of at most 498 bytes together",
      err, 1, true)
    assert.same({ { exists = true, v = 1 } },
      values({ op({ op = "opts", k = string.rep("s", 98), opts = { ttl = 1 } }, long) }))
  end)
end)

describe("state ttl in the test driver", function()
  it("uses the driver's clock", function()
    local testing = require("luastream.testing")
    local path = H.write_script(H.header .. [[
local app = ls.app{ name = "ttl" }
local sdf = app:dataframe(app:topic("in", { key = "string" }))
sdf = sdf:apply(function(row, state)
  if row.set then state:set("seen", row.set, { ttl = 1000 }) end
  return { seen = state:get("seen", "none") }
end, { stateful = true })
sdf:to_topic(app:topic("out"))
]], "ttl_app.lua")
    local d = testing.driver(path, { start_ms = 5000 })
    d:send("in", { key = "k", value = { set = "yes" } })
    d:advance(999)
    d:send("in", { key = "k", value = {} })
    d:advance(1)
    d:send("in", { key = "k", value = {} })
    local got = {}
    for j, r in ipairs(d:read("out")) do got[j] = r.value.seen end
    assert.same({ "yes", "yes", "none" }, got)
  end)
end)
