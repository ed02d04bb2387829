-- Mistakes people new to luastream make, and the errors that should meet
-- them: at the script's line when the pipeline is built, or a message that
-- says what to change when the mistake only shows on a row.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local ls = require("luastream")
local expr = require("luastream.expr")
local vec = ls.vec

local describe_real = H.real_core and describe or pending

-- The script with `body` after an app and a dataframe `sdf` on topic "in"
-- (line 4 is the first line of body).
local function script(body)
  return H.header .. [[
local app = ls.app{ name = "newcomer" }
local sdf = app:dataframe(app:topic("in", { key = "string" }))
]] .. body .. "\nsdf:to_topic(app:topic(\"out\"))\n"
end

local function load_error(body)
  return H.error_of(H.load_source, script(body))
end

describe("an unknown method on a column expression", function()
  it("is an error at the script's line, suggesting the expression method", function()
    local err = load_error("sdf = sdf[ls.abs(sdf.dG):greater(3.0)]")
    assert.matches("app%.lua:4: unknown method 'greater' on a column expression; did you mean 'gt'%?$", err)
  end)

  it("suggests the closest known name for a typo", function()
    assert.matches("app.lua:4: unknown method 'notnul' on a column expression; did you mean 'notnull'?",
      load_error("sdf = sdf[sdf.x:notnul()]"), 1, true)
    assert.matches("did you mean 'rolling_mean'?", load_error("sdf.m = sdf.g:rolling_maen(5)"), 1, true)
    assert.matches("did you mean 'upper'?", load_error("sdf.n = sdf.name:uper()"), 1, true)
    assert.matches("did you mean 'isin'?", load_error("sdf = sdf[sdf.d:in_{ 'a' }]"), 1, true)
    assert.matches("did you mean 'le'?", load_error("sdf = sdf[sdf.d:less_equal(1)]"), 1, true)
  end)

  it("without a close name, says what is allowed and how to call anything else", function()
    local err = load_error("sdf.y = sdf.x:frobnicate()")
    assert.matches("app.lua:4: unknown method 'frobnicate' on a column expression: ", err, 1, true)
    assert.matches("use expr:apply(fn)", err, 1, true)
  end)

  it("is checked on nested columns and on computed expressions too", function()
    assert.matches("app.lua:4: unknown method 'greater'",
      load_error("sdf = sdf[sdf.pos.lat:greater(1)]"), 1, true)
    assert.matches("app.lua:4: unknown method 'avg'",
      load_error("sdf.m = (sdf.g * 2):avg()"), 1, true)
  end)

  it("accepts every method of ls.vec values and of strings", function()
    local probe = vec.new(1)
    local n = 0
    for name in pairs(vec) do
      if pcall(function() return probe[name] end) and type(probe[name]) == "function" then
        assert.is_true(expr.value_methods()[name], name)
        assert.is_true(ls.is_expr(ls.col("g")[name](ls.col("g"))), name)
        n = n + 1
      end
    end
    assert.is_true(n >= 20) -- sum, mean, ..., rolling_min, totable
    for name, f in pairs(string) do
      if type(f) == "function" then
        assert.is_true(ls.is_expr(ls.col("s")[name](ls.col("s"))), name)
      end
    end
    assert.is_nil(expr.value_methods().magnitude) -- a function of ls.vec, not a method
  end)

  it("only suggests names that exist", function()
    for alias, target in pairs(expr.ALIASES) do
      assert.is_true(expr.methods[target] ~= nil or expr.value_methods()[target] == true,
        alias .. " -> " .. target)
    end
  end)
end)

describe_real("value methods on columns", function()
  it("still run per row: string methods and vec methods", function()
    H.load_source(script([==[
sdf.up = sdf.name:upper()
sdf.head = sdf.name:sub(1, 3)
sdf.peak = sdf.g:max()
sdf = sdf[sdf.peak:gt(1)]]==]))
    local vals = H.values({ { { name = "phone-1", g = vec.from{ 1, 3, 2 } }, key = "k" },
      { { name = "phone-2", g = vec.from{ 0.5 } }, key = "k" } })
    assert.equal(1, #vals)
    assert.equal("PHONE-1", vals[1].up)
    assert.equal("pho", vals[1].head)
    assert.equal(3, vals[1].peak)
  end)
end)

describe_real("a stateless step written as if it had state", function()
  local testing = require("luastream.testing")
  local MESSAGE = "this step is not stateful: declare it with sdf:update(fn, { stateful = true }) " ..
    "to get state as the second argument (stateless functions get fn(row, msg))"

  local function driver(body, opts)
    return testing.driver(H.write_script(script(body), "nostate.lua"), opts)
  end

  it("fails the row with an error naming the step and the fix", function()
    local d = driver([[
sdf:update(function(row, state)
  row.n = state:get("n", 0) + 1
end)]], { set = { on_error = "skip" } })
    d:send("in", "k", { x = 1 })
    assert.same({}, d:read_values("out"))
    local errs = d:errors()
    assert.equal(1, #errs)
    assert.matches("nostate%.lua:4: update: .*nostate%.lua:5: " .. MESSAGE:gsub("%p", "%%%0"), errs[1].error)
  end)

  it("says so for set, delete and exists too, and in apply and filter", function()
    for _, body in ipairs({
      'sdf:update(function(row, state) state:set("n", 1) end)',
      'sdf:update(function(row, state) state:delete("n") end)',
      'sdf = sdf:filter(function(row, state) return state:exists("n") end)',
      'sdf = sdf:apply(function(row, state) return { n = state:get("n") } end)',
    }) do
      local d = driver(body)
      local err = H.error_of(d.send, d, "in", "k", { x = 1 })
      assert.matches(MESSAGE, err, 1, true)
    end
  end)

  it("leaves msg's fields and a stateful step's state as they were", function()
    local d = driver([[
sdf.k = function(row, msg) return msg.key .. "@" .. msg.offset .. "/" .. #msg.headers end
sdf.missing = function(row, msg) return msg.nothing == nil end
sdf:update(function(row, state)
  row.n = state:get("n", 0) + 1
  state:set("n", row.n)
end, { stateful = true })]])
    d:send("in", "k", { x = 1 })
    d:send("in", "k", { x = 2 })
    assert.same({ { x = 1, k = "k@0/0", missing = true, n = 1 }, { x = 2, k = "k@1/0", missing = true, n = 2 } },
      d:read_values("out"))
  end)
end)
