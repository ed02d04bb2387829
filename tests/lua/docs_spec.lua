-- Every ```lua block of the user documentation compiles: readers copy them.
-- Only compiled (loadstring), not run: most blocks are parts of a script
-- (they use an `app` or `sdf` declared elsewhere), which is fine as long as
-- each is valid Lua on its own.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local root = here .. "../../"

local FILES = { "README.md", "docs/api.md", "docs/testing.md", "docs/vec.md" }

-- Blocks known not to compile, by file and a piece of their text, each with
-- the reason (reported as pending); none today.
local KNOWN_BAD = {}

-- The ```lua blocks of a markdown text: { { line = first line, code = text }, ... }.
local function lua_blocks(text)
  local blocks, cur = {}, nil
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if cur then
      if line:match("^%s*```%s*$") then
        blocks[#blocks + 1] = { line = cur.line, code = table.concat(cur.lines, "\n") }
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    elseif line:match("^%s*```lua%s*$") then
      cur = { line = n + 1, lines = {} }
    end
  end
  assert(cur == nil, "unclosed ```lua block starting at line " .. tostring(cur and cur.line))
  return blocks
end

local function read(path)
  local f = assert(io.open(root .. path, "r"))
  local s = f:read("*a")
  f:close()
  return s
end

local function known_bad(file, code)
  for piece, why in pairs(KNOWN_BAD[file] or {}) do
    if code:find(piece, 1, true) then return why end
  end
  return nil
end

describe("documentation code blocks", function()
  it("finds the blocks", function()
    local blocks = lua_blocks("x\n```lua\nlocal a = 1\n```\n```sh\nls\n```\n```lua\nb()\n```\n")
    assert.same({ { line = 3, code = "local a = 1" }, { line = 9, code = "b()" } }, blocks)
  end)

  for _, file in ipairs(FILES) do
    local blocks = lua_blocks(read(file))
    it(file .. " has lua blocks", function()
      assert.is_true(#blocks > 0)
    end)
    for _, b in ipairs(blocks) do
      local name = file .. ":" .. b.line .. " compiles"
      local why = known_bad(file, b.code)
      local chunk, err = loadstring(b.code, "=" .. file .. " (block at line " .. b.line .. ")")
      if why and not chunk then
        pending(name .. " (known bad: " .. why .. "; " .. tostring(err) .. ")")
      else
        it(name, function()
          assert(chunk, err)
        end)
      end
    end
  end
end)
