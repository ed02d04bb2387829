-- Stateless pipeline for the on_error tests.
--
-- Input rows {id, n} (JSON, string keys) become {id, doubled = 2 * n}.
-- A row whose n is not a number raises a Lua error; a row with nan = true
-- produces NaN, which JSON cannot encode; a row with fatal = true raises
-- "fatal row <id>".
--
-- Environment: E2E_IN, E2E_OUT (topics), E2E_DLQ (dead-letter topic),
-- E2E_POLICY_FN=1 to use the on_error function below instead of a named policy.
-- The named policy defaults to "stop"; tests pick others with --set on_error=...
local ls = require("luastream")

local policy = "stop"
if os.getenv("E2E_POLICY_FN") == "1" then
  -- Chooses by the error text; prints each decision for the test to check.
  policy = function(err, row, msg)
    local choice
    if err:find("fatal row", 1, true) then
      choice = "stop"
    elseif err:find("string value", 1, true) then
      choice = "skip"
    else
      choice = "dead-letter" -- nil value, decode and encode errors
    end
    local nh, h1 = "nil", "-"
    if type(msg.headers) == "table" then
      nh = tostring(#msg.headers)
      local h = msg.headers[1]
      if h then h1 = tostring(h[1]) .. "=" .. tostring(h[2]) end
    end
    io.stdout:write(string.format("on_error|%s|%s|%s|%d|%d|%s|%s|%s|%s\n", choice, msg.topic,
      tostring(msg.key), msg.partition, msg.offset, row and tostring(row.id) or "-", nh, h1, err))
    io.stdout:flush()
    return choice
  end
end

local app = ls.app{
  name = os.getenv("E2E_APP") or "errors-e2e",
  commit_interval = 1.0,
  on_error = policy,
  dead_letter = os.getenv("E2E_DLQ") or "errors-dlq",
}

local input = app:topic(os.getenv("E2E_IN") or "errors-in", { key = "string", value = "json" })
local output = app:topic(os.getenv("E2E_OUT") or "errors-out", { key = "string", value = "json" })

local sdf = app:dataframe(input)
sdf = sdf:apply(function(row)
  if row.fatal then error("fatal row " .. tostring(row.id)) end -- E2E:fatal
  local out = { id = row.id, doubled = row.n * 2 } -- E2E:arith
  if row.nan then out.ratio = 0 / 0 end
  return out
end)
sdf:to_topic(output)
