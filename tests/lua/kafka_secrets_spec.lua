-- kafka property values read at start: { env = "NAME" } and { file = "PATH" }
-- (docs/deploy.md, "Secrets"). rt.load reads them when cli.secrets is set
-- (luastream run); without it (the test driver) those properties are left out.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local ffi = require("ffi")

pcall(ffi.cdef, "int setenv(const char *name, const char *value, int overwrite);")
pcall(ffi.cdef, "int unsetenv(const char *name);")

local function script(kafka)
  return H.header .. "local app = ls.app{ name = 'a', kafka = " .. kafka .. " }\n" ..
    "app:dataframe(app:topic('in')):to_topic(app:topic('out'))\n"
end

local function tmpfile(content)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

describe("kafka values from the environment and files", function()
  after_each(function() ffi.C.unsetenv("LS_SPEC_SECRET") end)

  it("reads { env = NAME } and { file = PATH } (one trailing newline dropped)", function()
    ffi.C.setenv("LS_SPEC_SECRET", "from-env", 1)
    local crlf, lf, two = tmpfile("from-file\r\n"), tmpfile("line\n"), tmpfile("two\n\n")
    local spec = H.load_source(script(string.format(
      '{ ["sasl.username"] = "u", ["sasl.password"] = { env = "LS_SPEC_SECRET" }, ' ..
      '["ssl.key.password"] = { file = %q }, ["a.b"] = { file = %q }, ["c.d"] = { file = %q } }',
      crlf, lf, two)), { secrets = true })
    os.remove(crlf)
    os.remove(lf)
    os.remove(two)
    assert.same({ ["sasl.username"] = "u", ["sasl.password"] = "from-env", ["ssl.key.password"] = "from-file",
      ["a.b"] = "line", ["c.d"] = "two\n" }, spec.kafka)
  end)

  it("leaves them out when the process connects to nothing", function()
    local spec = H.load_source(script('{ ["sasl.username"] = "u", ["sasl.password"] = { env = "LS_SPEC_SECRET" } }'),
      {})
    assert.same({ ["sasl.username"] = "u" }, spec.kafka)
  end)

  it("names the property and the variable or file, never a value", function()
    local err = H.error_of(H.load_source, script('{ ["sasl.password"] = { env = "LS_SPEC_SECRET" } }'),
      { secrets = true }, "secrets_env.lua")
    assert.matches("secrets_env.lua:2: ls.app: kafka property 'sasl.password': environment variable " ..
      "LS_SPEC_SECRET is not set or empty$", err)
    ffi.C.setenv("LS_SPEC_SECRET", "", 1)
    err = H.error_of(H.load_source, script('{ ["sasl.password"] = { env = "LS_SPEC_SECRET" } }'),
      { secrets = true }, "secrets_env.lua")
    assert.matches("environment variable LS_SPEC_SECRET is not set or empty$", err)
    err = H.error_of(H.load_source, script('{ ["sasl.password"] = { file = "/nonexistent/pw" } }'),
      { secrets = true }, "secrets_file.lua")
    assert.matches("secrets_file.lua:2: ls.app: kafka property 'sasl.password': cannot read file " ..
      "/nonexistent/pw: No such file or directory$", err)
  end)

  it("refuses any other table", function()
    for _, v in ipairs({ "{}", '{ env = "A", file = "/b" }', '{ env = 1 }', '{ env = "" }', '{ path = "/x" }' }) do
      local err = H.error_of(H.load_source, script('{ ["sasl.password"] = ' .. v .. ' }'), { secrets = true })
      assert.matches("option 'kafka' property 'sasl.password' must be a string, number or boolean, got table " ..
        '(a value read at start is { env = "NAME" } or { file = "PATH" })', err, 1, true)
    end
  end)
end)
