-- luacheck configuration (Debian package lua-check), run by `make lint` and `make test`.
std = "luajit"
max_line_length = 120
-- Methods keep their implicit `self` even when the body does not need it
-- (App:run, the not-yet-implemented sdf methods): they are still called as
-- methods, so an unused self is no mistake.
ignore = { "212/self" }
files["**/*_spec.lua"] = { std = "+busted" }
files["tests/lua/helpers.lua"] = { std = "+busted" }
exclude_files = {
  "build*/**",
  -- A script with a deliberate syntax error, for the start-error e2e test
  -- (tests/e2e/test_start_errors.py): luacheck cannot parse it by design.
  "tests/e2e/scripts/bad_syntax.lua",
}
