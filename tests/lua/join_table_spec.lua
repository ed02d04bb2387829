-- app:table and sdf:join_table (docs/joins.md), through the test driver.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local testing = require("luastream.testing")

-- Scripts: the body starts at line 7.
local HEAD = [[
local ls = require("luastream")
local app = ls.app{ name = "jt", on_error = "skip" }
local owners = app:table(app:topic("owners", { key = "string" }))
local input = app:topic("in", { key = "string" })
local out = app:topic("out", { key = "string" })
local sdf = app:dataframe(input)
]]

local nscript = 0
local function script(body)
  nscript = nscript + 1
  return H.write_script(HEAD .. body, "jt" .. nscript .. ".lua")
end

local function driver(body, opts) return testing.driver(script(body), opts) end

local function outs(d)
  local res = {}
  for j, r in ipairs(d:read("out")) do res[j] = { r.key, r.value } end
  return res
end

describe("app:table", function()
  it("keeps the latest value per key; a tombstone deletes it; it survives a restart", function()
    local d = driver("sdf:join_table(owners, { how = \"left\" }):to_topic(out)")
    d:send("owners", "p1", { owner = "ann" })
    d:send("owners", "p1", { owner = "bea" })
    d:send("owners", "p2", { owner = "cid" })
    assert.same({ owner = "bea" }, d:state("__table__owners", "p1", "v"))
    d:send("owners", { key = "p2" }) -- a null value
    assert.is_nil(d:state("__table__owners", "p2"))
    d:send("owners", { key = "p9" }) -- a tombstone for a key never set: nothing to delete, no error
    assert.is_nil(d:state("__table__owners", "p9"))
    d:restart()
    assert.same({ owner = "bea" }, d:state("__table__owners", "p1", "v"))
    assert.same({}, d:errors())
  end)

  it("a malformed record or one without a key is an error under on_error; the table keeps what it had", function()
    local d = driver("sdf:join_table(owners, { how = \"left\" }):to_topic(out)")
    d:send("owners", "p1", { owner = "ann" })
    d:send("owners", { key = "p1", raw_value = "{bad" })
    d:send("owners", { value = { owner = "nobody's" } })
    d:send("in", "p1", { x = 1 })
    local got = {}
    for j, e in ipairs(d:errors()) do got[j] = { e.stage, e.topic, e.offset, e.error, e.policy } end
    assert.same({
      { "decode", "owners", 1, "value: invalid JSON: unexpected character 'b' at byte 1", "skip" },
      { "process", "owners", 2, d.script .. ":3: app:table 'owners': a stateful step needs a message key, and " ..
        "this record has none", "skip" },
    }, got)
    assert.same({ { "p1", { x = 1, owner = "ann" } } }, outs(d))
  end)

  it("refuses a topic read as a stream too, and a second table of one topic", function()
    local path = script([[local again = app:table(app:topic("owners", { key = "string" }))]])
    local ok, err = pcall(testing.driver, path)
    assert.is_false(ok)
    assert.matches(":7: app:table: topic 'owners' is already a table %(app:table at .*:3%); use that one", err)
    path = script([[local s2 = app:dataframe(app:topic("owners", { key = "string" }))]])
    ok, err = pcall(testing.driver, path)
    assert.is_false(ok)
    assert.matches(":7: app:dataframe: topic 'owners' is a table %(app:table at .*:3%); join it with " ..
      "sdf:join_table", err)
  end)
end)

describe("sdf:join_table", function()
  it("inner (the default) drops rows without a value; the row's own columns win", function()
    local d = driver("sdf:join_table(owners):to_topic(out)")
    d:send("in", "p1", { x = 1, owner = "mine" })
    d:send("owners", "p1", { owner = "ann", contact = { phone = "123" } })
    d:send("in", "p1", { x = 2 })
    d:send("in", "p1", { x = 3, owner = "mine" })
    d:send("in", "p9", { x = 4 })
    assert.same({
      { "p1", { x = 2, owner = "ann", contact = { phone = "123" } } },
      { "p1", { x = 3, owner = "mine", contact = { phone = "123" } } },
    }, outs(d))
  end)

  it("left keeps rows without a value as they are", function()
    local d = driver("sdf:join_table(owners, { how = \"left\" }):to_topic(out)")
    d:send("in", "p1", { x = 1 })
    d:send("owners", "p1", { owner = "ann" })
    d:send("in", "p1", { x = 2 })
    d:send("owners", { key = "p1" })
    d:send("in", "p1", { x = 3 })
    assert.same({ { "p1", { x = 1 } }, { "p1", { x = 2, owner = "ann" } }, { "p1", { x = 3 } } }, outs(d))
  end)

  it("a merger builds the output row from (left, right); changing right does not change the table", function()
    local d = driver([[
sdf:join_table(owners, { how = "left", merger = function(left, right)
  local r = right or { owner = "nobody" }
  r.x = left.x
  return r
end }):to_topic(out)]])
    d:send("owners", "p1", { owner = "ann" })
    d:send("in", "p1", { x = 1 })
    d:send("in", "p2", { x = 2 })
    assert.same({ { "p1", { owner = "ann", x = 1 } }, { "p2", { owner = "nobody", x = 2 } } }, outs(d))
    assert.same({ owner = "ann" }, d:state("__table__owners", "p1", "v"))
  end)

  it("later steps changing a joined nested value leave the table as it was", function()
    local d = driver([[
sdf:join_table(owners):update(function(row) row.contact.phone = "changed" end):to_topic(out)]])
    d:send("owners", "p1", { contact = { phone = "123" } })
    d:send("in", "p1", { x = 1 })
    assert.same({ { "p1", { x = 1, contact = { phone = "changed" } } } }, outs(d))
    assert.same({ contact = { phone = "123" } }, d:state("__table__owners", "p1", "v"))
  end)

  it("a merger that changes the row leaves other branches and earlier outputs as they were", function()
    local d = driver([[
local out2, out3 = app:topic("out2", { key = "string" }), app:topic("out3", { key = "string" })
sdf:to_topic(out3):join_table(owners, { merger = function(l, r)
  l.owner = r.owner
  l.tags[#l.tags + 1] = "joined"
  return l
end }):to_topic(out)
sdf:to_topic(out2)]])
    d:send("owners", "p1", { owner = "ann" })
    d:send("in", "p1", { x = 1, tags = { "in" } })
    assert.same({ { "p1", { x = 1, tags = { "in", "joined" }, owner = "ann" } } }, outs(d))
    assert.same({ x = 1, tags = { "in" } }, d:read("out2")[1].value)
    assert.same({ x = 1, tags = { "in" } }, d:read("out3")[1].value)
  end)

  it("a merger on a row nothing else holds gets the row itself", function()
    local d = driver([[
local seen = setmetatable({}, { __mode = "k" })
sdf:update(function(row) seen[row] = true end)
  :join_table(owners, { merger = function(l, r) l.same = seen[l] == true; l.owner = r.owner; return l end })
  :to_topic(out)]])
    d:send("owners", "p1", { owner = "ann" })
    d:send("in", "p1", { x = 1 })
    assert.same({ { "p1", { x = 1, same = true, owner = "ann" } } }, outs(d))
  end)

  local cases = {
    { "sdf:join_table(input)", "join_table: expected a table from app:table(topic), got a topic " ..
      "(make it a table: app:table(topic))" },
    { "sdf:join_table(owners, { how = \"outer\" })", "join_table: option 'how' must be \"inner\" or \"left\", " ..
      "got 'outer'" },
    { "sdf:join_table(owners, { on = \"device\" })", "join_table: option 'on' needs a global table " ..
      "(app:global_table): a table's partitions hold the keys of the stream's same partitions only; re-key " ..
      "the rows with group_by first" },
    { "sdf:join_table(owners, { merger = 5 })", "join_table: option 'merger' must be a function(left, right) -> " ..
      "row, got number" },
  }
  for _, case in ipairs(cases) do
    it("refuses " .. case[1], function()
      local path = script(case[1])
      local ok, err = pcall(testing.driver, path)
      assert.is_false(ok)
      assert.same(path .. ":7: " .. case[2], err)
    end)
  end
end)

describe("sdf:group_by then sdf:join_table", function()
  it("re-keys rows into the partitions the table holds their new key in (the table's key format)", function()
    local d = driver([[
sdf:group_by("device", { partitions = 4 }):join_table(owners, { how = "left" }):to_topic(out)]],
      { partitions = 4 })
    local got = {}
    for j = 1, 12 do d:send("owners", "dev-" .. j, { owner = "o" .. j }) end
    for j = 1, 12 do d:send("in", "reading-" .. j, { device = "dev-" .. j, x = j }) end
    for _, r in ipairs(d:read("out")) do got[r.value.x] = { r.key, r.value.owner } end
    for j = 1, 12 do assert.same({ "dev-" .. j, "o" .. j }, got[j]) end
  end)

  it("refuses a group_by joined with topics of two key formats", function()
    local path = script([[
local other = app:table(app:topic("other", { key = "json" }))
sdf = sdf:group_by("device")
sdf:join_table(owners):to_topic(out)
sdf:join_table(other):to_topic(out)]])
    local ok, err = pcall(testing.driver, path)
    assert.is_false(ok)
    assert.same(path .. ":10: group_by topic 'jt__repartition__device' is joined with 'owners' (key format " ..
      "'string') and 'other' (key format 'json'): their keys cannot land in the same partitions; give both " ..
      "topics one key format", err)
  end)
end)

describe("app:global_table", function()
  local GHEAD = [[
local ls = require("luastream")
local app = ls.app{ name = "gt", on_error = "skip" }
local people = app:global_table(app:topic("people", { key = "string" }))
local input = app:topic("in", { key = "string" })
local out = app:topic("out", { key = "string" })
local sdf = app:dataframe(input)
]]
  local function gdriver(body)
    nscript = nscript + 1
    return testing.driver(H.write_script(GHEAD .. body, "gt" .. nscript .. ".lua"), { partitions = 3 })
  end

  it("joins on a column: every key of every partition is there", function()
    local d = gdriver([[sdf:join_table(people, { on = "person", how = "left" }):to_topic(out)]])
    d:send("people", "ann", { name = "Ann", phone = "1" })
    d:send("people", "bob", { name = "Bob", phone = "2" })
    d:send("people", "cid", { name = "Cid", phone = "3" })
    local got = {}
    for _, dev in ipairs({ "d1", "d2", "d3", "d4" }) do
      d:send("in", dev, { person = ({ d1 = "ann", d2 = "bob", d3 = "cid", d4 = "nobody" })[dev] })
    end
    d:send("people", { key = "bob" }) -- deleted
    d:send("in", "d2", { person = "bob" })
    for j, r in ipairs(d:read("out")) do got[j] = r.value end
    assert.same({
      { person = "ann", name = "Ann", phone = "1" }, { person = "bob", name = "Bob", phone = "2" },
      { person = "cid", name = "Cid", phone = "3" }, { person = "nobody" }, { person = "bob" },
    }, got)
  end)

  it("joins on the row's key without `on`, and on a function", function()
    local d = gdriver([[
sdf:join_table(people):to_topic(out)
sdf:join_table(people, { on = function(row) return row.alias end }):to_topic(out)]])
    d:send("people", "ann", { name = "Ann" })
    d:send("in", "ann", { alias = "ann" })
    d:send("in", "zed", { alias = "ann" })
    local got = {}
    for j, r in ipairs(d:read("out")) do got[j] = { r.key, r.value.name } end
    assert.same({ { "ann", "Ann" }, { "ann", "Ann" }, { "zed", "Ann" } }, got)
  end)

  it("joins on an expression", function()
    local d = gdriver([[
sdf:join_table(people, { on = ls.col("first") .. "-" .. ls.col("last") }):to_topic(out)]])
    d:send("people", "ann-lee", { name = "Ann" })
    d:send("in", "d1", { first = "ann", last = "lee" })
    d:send("in", "d2", { first = "ann", last = "kim" }) -- no such key: an inner join drops it
    local got = {}
    for j, r in ipairs(d:read("out")) do got[j] = { r.key, r.value.name } end
    assert.same({ { "d1", "Ann" } }, got)
  end)

  it("is read again from its topic after a restart, as the runtime does on start", function()
    local d = gdriver([[sdf:join_table(people, { on = "person", how = "left" }):to_topic(out)]])
    d:send("people", "ann", { name = "Ann" })
    d:send("people", "bob", { name = "Bob" })
    d:send("people", "ann", { name = "Ann B." })
    d:send("people", { key = "bob" }) -- deleted
    d:restart()
    d:send("in", "d1", { person = "ann" })
    d:send("in", "d2", { person = "bob" })
    d:restart()
    d:send("people", "bob", { name = "Bob 2" })
    d:send("in", "d3", { person = "bob" })
    local got = {}
    for j, r in ipairs(d:read("out")) do got[j] = { r.key, r.value.name } end
    assert.same({ { "d1", "Ann B." }, { "d2", nil }, { "d3", "Bob 2" } }, got)
  end)
end)

-- The default merging is planned once per table value (luastream.join.table_merge):
-- a function per set of columns, found by the value's identity.
describe("sdf:join_table's default merging", function()
  local join = require("luastream.join")

  it("follows the table's value as it changes, is deleted and comes back after a restart", function()
    local d = driver("sdf:join_table(owners, { how = \"left\" }):to_topic(out)")
    d:send("owners", "p1", { owner = "ann", plan = "basic" })
    d:send("in", "p1", { x = 1 })
    d:send("in", "p1", { x = 2, plan = "mine" })
    d:send("owners", "p1", { owner = "bea", region = "eu" }) -- other columns
    d:send("in", "p1", { x = 3 })
    d:send("owners", "p1", { owner = "cid", plan = "pro" }) -- the first value's columns again
    d:send("in", "p1", { x = 4 })
    d:send("owners", { key = "p1" }) -- deleted
    d:send("in", "p1", { x = 5 })
    d:send("owners", "p1", { owner = "dan", contact = { phone = "9" } })
    d:restart()
    d:send("in", "p1", { x = 6 })
    assert.same({
      { "p1", { x = 1, owner = "ann", plan = "basic" } },
      { "p1", { x = 2, owner = "ann", plan = "mine" } },
      { "p1", { x = 3, owner = "bea", region = "eu" } },
      { "p1", { x = 4, owner = "cid", plan = "pro" } },
      { "p1", { x = 5 } },
      { "p1", { x = 6, owner = "dan", contact = { phone = "9" } } },
    }, outs(d))
    assert.same({}, d:errors())
  end)

  it("gives each row its own copies of nested tables", function()
    local d = driver([[
sdf:join_table(owners):update(function(row)
  row.contact.phone = row.contact.phone .. row.x
  row.contact.tags[#row.contact.tags + 1] = row.x
end):to_topic(out)]])
    d:send("owners", "p1", { contact = { phone = "1", tags = { "t" } } })
    d:send("in", "p1", { x = "a" })
    d:send("in", "p1", { x = "b" })
    assert.same({
      { "p1", { x = "a", contact = { phone = "1a", tags = { "t", "a" } } } },
      { "p1", { x = "b", contact = { phone = "1b", tags = { "t", "b" } } } },
    }, outs(d))
    assert.same({ contact = { phone = "1", tags = { "t" } } }, d:state("__table__owners", "p1", "v"))
  end)

  it("adds the missing columns, nulls included, and keeps the row's own, nulls included", function()
    local null = H.null
    local t = { a = 1, b = null, c = "x", ["two words"] = 2, ['q"\\\n\0'] = 3, ["\195\169"] = 4, d = { 5 } }
    local v = { a = 10, c = null, z = 0 }
    join.table_merge(v, t)
    assert.same({ a = 10, b = null, c = null, z = 0, ["two words"] = 2, ['q"\\\n\0'] = 3, ["\195\169"] = 4,
      d = { 5 } }, v)
    assert.are_not.equal(t.d, v.d)
    assert.same({ a = 1, b = null, c = "x", ["two words"] = 2, ['q"\\\n\0'] = 3, ["\195\169"] = 4, d = { 5 } }, t)
  end)

  it("makes one function per set of columns, shared by the values that have it", function()
    local n = join.merge_shapes()
    local v1, v2, v3 = { k = 1 }, { k = 2 }, { k = 3 }
    join.table_merge(v1, { shape_a = 1, shape_b = "x" })
    join.table_merge(v2, { shape_b = "y", shape_a = 2 })
    assert.same(n + 1, join.merge_shapes())
    join.table_merge(v3, { shape_a = { 3 }, shape_b = "z" }) -- a nested table where the others had a number
    assert.same(n + 2, join.merge_shapes())
    assert.same({ { k = 1, shape_a = 1, shape_b = "x" }, { k = 2, shape_a = 2, shape_b = "y" },
      { k = 3, shape_a = { 3 }, shape_b = "z" } }, { v1, v2, v3 })
  end)

  it("merges values it makes no function for: other keys than strings, many columns, not a table", function()
    local n = join.merge_shapes()
    local v = { x = 1 }
    join.table_merge(v, { 10, { 20 }, y = 2 })
    assert.same({ x = 1, 10, { 20 }, y = 2 }, v)
    local wide, want = {}, { x = 1 }
    for j = 1, 65 do
      wide["c" .. j] = j
      want["c" .. j] = j
    end
    v = { x = 1 }
    join.table_merge(v, wide)
    assert.same(want, v)
    v = { x = 1 }
    join.table_merge(v, "a string")
    join.table_merge(v, nil)
    assert.same({ x = 1 }, v)
    assert.same(n, join.merge_shapes())
  end)

  it("names the step when the row is not a table, as before", function()
    nscript = nscript + 1
    local path = H.write_script([[
local ls = require("luastream")
local app = ls.app{ name = "jt", on_error = "skip" }
local owners = app:table(app:topic("owners", { key = "string" }))
local input = app:topic("in", { key = "string", value = "string" })
local out = app:topic("out", { key = "string" })
app:dataframe(input):join_table(owners):to_topic(out)
]], "jt" .. nscript .. ".lua")
    local d = testing.driver(path)
    d:send("owners", "p1", { owner = "ann" })
    d:send("in", "p1", "just text")
    d:send("in", "p2", "no owner: dropped by the inner join")
    local errs = d:errors()
    assert.same(1, #errs)
    assert.same(path .. ":6: join_table 'owners': attempt to index local 'v' (a string value)", errs[1].error)
    assert.same({}, outs(d))
  end)

  -- Last: it fills the functions' cache of this Lua state.
  it("stops making functions at 256 sets of columns and merges the rest alike", function()
    local j = 0
    while join.merge_shapes() < 256 do
      j = j + 1
      local v = { x = j }
      join.table_merge(v, { ["cap" .. j] = j })
      assert.same({ x = j, ["cap" .. j] = j }, v)
    end
    local v = { x = 0, cap_last = "mine" }
    join.table_merge(v, { cap_last = "theirs", cap_more = { 1 } })
    assert.same({ x = 0, cap_last = "mine", cap_more = { 1 } }, v)
    assert.same(256, join.merge_shapes())
  end)
end)
