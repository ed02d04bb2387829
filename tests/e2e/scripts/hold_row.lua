-- A pass-through whose loop can be held on a row.
--
-- Input {x = <int>, hold = true|nil} (JSON, string keys) on "in", one message
-- per batch; every row goes on unchanged to "out". A row with hold keeps its
-- row function waiting (asleep, not spinning) until the file named by
-- E2E_RELEASE exists, so the loop does not turn meanwhile while the rest of
-- the process (librdkafka's threads, the HTTP endpoint) goes on.
local ffi = require("ffi")
local ls = require("luastream")

pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")
local release = assert(os.getenv("E2E_RELEASE"), "set E2E_RELEASE")

local function released()
  local f = io.open(release, "rb")
  if f then f:close() end
  return f ~= nil
end

-- batch_time_limit = 0: no watchdog, the hold may last past /health's 60 s
local app = ls.app{ name = "hold-row", batch_size = 1, commit_interval = 0.5, batch_time_limit = 0 }
local input = app:topic("in", { key = "string", value = "json" })
local output = app:topic("out", { key = "string", value = "json" })

local sdf = app:dataframe(input)
sdf = sdf:update(function(row)
  if row.hold then
    while not released() do ffi.C.poll(nil, 0, 50) end
  end
end)
sdf:to_topic(output)
