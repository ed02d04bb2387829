local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local rt = H.rt
local core = H.core

local COUNTER = H.header .. [[
local app = ls.app{ name = "counter" }
local sdf = app:dataframe(app:topic("in", { key = "string" }))
sdf = sdf:update(function(row, state, msg)
  local n = state:get("n", 0) + 1
  state:set("n", n)
  state:set("sum", state:get("sum", 0) + row.x)
  row.n, row.sum, row.key = n, state:get("sum"), msg.key
end, { stateful = true })
sdf:to_topic(app:topic("out"))
]]

local function rows(list)
  local out = {}
  for i, r in ipairs(list) do out[i] = { { x = r[2] }, key = r[1], p = r.p or 0, off = i } end
  return out
end

-- The dirty entries taken for a checkpoint, as { [store/partition/key/state_key] = value }.
local function take()
  local n = rt.take_state_changes()
  local res = {}
  for j = 1, n do
    local mk, sk = require("luastream.state").split_key(rt.changes.key[j])
    local v = rt.changes.val[j]
    res[rt.spec.stores[rt.changes.store[j]].name .. "/" .. rt.changes.part[j] .. "/" .. mk .. "/" .. sk] =
      v and core.decode("msgpack", v) or false
  end
  return res, n
end

describe("state", function()
  before_each(function() H.load_source(COUNTER) end)

  it("is scoped to the message key", function()
    local outs = H.run(rows({ { "a", 1 }, { "b", 10 }, { "a", 2 }, { "a", 3 }, { "b", 20 } }))
    local got = {}
    for j, o in ipairs(outs) do got[j] = { o.val.key, o.val.n, o.val.sum } end
    assert.same({ { "a", 1, 1 }, { "b", 1, 10 }, { "a", 2, 3 }, { "a", 3, 6 }, { "b", 2, 30 } }, got)
  end)

  it("is kept per partition", function()
    local outs = H.run({ { { x = 1 }, key = "a", p = 0 }, { { x = 1 }, key = "a", p = 1 },
      { { x = 1 }, key = "a", p = 0 } })
    assert.same({ 1, 1, 2 }, { outs[1].val.n, outs[2].val.n, outs[3].val.n })
  end)

  it("survives between batches and hands its changes to the checkpoint once", function()
    H.run(rows({ { "a", 1 }, { "b", 2 } }))
    H.run(rows({ { "a", 5 } }))
    local changes, n = take()
    assert.same(4, n)
    assert.same({ ["default/0/a/n"] = 2, ["default/0/a/sum"] = 6, ["default/0/b/n"] = 1,
      ["default/0/b/sum"] = 2 }, changes)
    local _, again = take()
    assert.same(0, again)
    -- still cached after the checkpoint
    local outs = H.run(rows({ { "a", 1 } }))
    assert.same(3, outs[1].val.n)
  end)

  it("rolls back the writes of a row that fails, in the batch and in its replay", function()
    -- row 3 sets n, then fails on sum + "bad": its n must not count
    local n, meta = H.feed(rows({ { "a", 1 }, { "a", 2 }, { "a", "bad" }, { "a", 4 } }))
    local ok, err = pcall(rt.run_batch, n, meta)
    assert.is_false(ok)
    assert.matches("arithmetic", err)
    -- as the runtime does: replay row by row, skipping the bad one
    local got = {}
    for r = 1, n do
      local ok2, nout = pcall(rt.run_batch, n, meta, r, r)
      if ok2 then
        for _, o in ipairs(H.outputs(nout)) do got[#got + 1] = { o.val.n, o.val.sum } end
      else
        assert.same(3, r)
      end
    end
    assert.same({ { 1, 1 }, { 2, 3 }, { 3, 7 } }, got)
    local changes = take()
    assert.same({ ["default/0/a/n"] = 3, ["default/0/a/sum"] = 7 }, changes)
  end)

  it("reloads from the store after a partition is forgotten", function()
    H.run(rows({ { "a", 1 } }))
    take()
    rt.forget_partition(0)
    -- without a C store behind it (these specs), a forgotten key starts empty
    local outs = H.run(rows({ { "a", 1 } }))
    assert.same(1, outs[1].val.n)
  end)

  it("raises a clear error for a record without a key, naming the step", function()
    local err = H.error_of(H.run, { { { x = 1 }, p = 0 } })
    assert.matches("app.lua:4: update: a stateful step needs a message key", err, 1, true)
  end)
end)

describe("state methods", function()
  it("get/set/delete/exists with any MessagePack value, ls.null included", function()
    H.load_source(H.header .. [[
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf = sdf:apply(function(row, state)
  if row.op == "set" then state:set(row.k, row.v) end
  if row.op == "del" then state:delete(row.k) end
  return { exists = state:exists(row.k), v = state:get(row.k, "dflt") }
end, { stateful = true, store = "kv" })
sdf:to_topic(app:topic("out"))
]])
    local tbl = { 1, 2, { a = H.null } }
    local outs = H.run({
      { { op = "get", k = "x" }, key = "k" },
      { { op = "set", k = "x", v = tbl }, key = "k" },
      { { op = "set", k = "y", v = H.null }, key = "k" },
      { { op = "get", k = "y" }, key = "k" },
      { { op = "del", k = "x" }, key = "k" },
      { { op = "get", k = "x" }, key = "k" },
      { { op = "set", k = "z", v = 1.5 }, key = "k" },
      { { op = "set", k = "z" }, key = "k" }, -- set to nil deletes
    })
    assert.same({ exists = false, v = "dflt" }, outs[1].val)
    assert.same({ exists = true, v = tbl }, outs[2].val)
    assert.same({ exists = true, v = H.null }, outs[4].val)
    assert.same({ exists = false, v = "dflt" }, outs[6].val)
    assert.same({ exists = false, v = "dflt" }, outs[8].val)
    local n = rt.take_state_changes()
    local seen = {}
    for j = 1, n do
      local _, sk = require("luastream.state").split_key(rt.changes.key[j])
      seen[sk] = rt.changes.val[j] and core.decode("msgpack", rt.changes.val[j]) or false
    end
    assert.same({ x = false, y = H.null, z = false }, seen)
    assert.same("kv", rt.spec.stores[1].name)
  end)

  it("rejects state keys that are not strings", function()
    H.load_source(H.header .. [[
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf:update(function(row, state) state:set(1, true) end, { stateful = true })
]])
    local err = H.error_of(H.run, { { {}, key = "k" } })
    assert.matches("state keys must be strings, got number", err, 1, true)
  end)

  it("checks the options; a store may serve several input topics", function()
    local err = H.error_of(H.load_source, H.header .. [[
local app = ls.app{}
app:dataframe(app:topic("in")):update(function() end, { store = "s" })
]])
    assert.matches("update: option 'store' needs stateful = true", err, 1, true)
    local spec = H.load_source(H.header .. [[
local app = ls.app{}
app:dataframe(app:topic("a")):update(function() end, { stateful = true })
app:dataframe(app:topic("b")):update(function() end, { stateful = true })
app:dataframe(app:topic("a")):update(function() end, { stateful = true, store = "x" })
]])
    assert.same({ "a", "b" }, spec.stores[1].topics)
    assert.same("a", spec.stores[1].topic)
    assert.same({ "a" }, spec.stores[2].topics)
  end)
end)
