-- keyway's Lua sandbox, run in each script's fresh state before the
-- script: Redis 7.0's rules on stock Lua 5.1. Redis marks tables read-only
-- inside its patched VM; here each library table (and the globals) is
-- reached through an empty guard whose metatable refuses writes, and the
-- base functions that write tables raw (rawset, setmetatable) or hand out
-- another environment (loadstring, load) are wrapped to respect guards.
-- Binary chunks are parsed as text, so they fail as they do in Redis.
-- Returns the environment the script runs in, a function that changes
-- what its globals are (a function library loads with only `redis` in
-- sight, as in Redis, and runs with everything), and `guard`.

local rawget, rawset, setmetatable, getmetatable = rawget, rawset, setmetatable, getmetatable
local setfenv, type, error, tostring, next, ipairs = setfenv, type, error, tostring, next, ipairs
local loadstring, load = loadstring, load
local G = _G

for _, name in ipairs({ "getfenv", "setfenv", "print", "newproxy", "dofile",
                        "loadfile", "module", "require" }) do
  rawset(G, name, nil)
end

local READONLY = "Attempt to modify a readonly table"
-- Guard -> the table it guards; guards whose metatable reads as nil.
local real = setmetatable({}, { __mode = "k" })
local hidden = setmetatable({}, { __mode = "k" })

local function deny()
  error(READONLY, 2)
end

local function guard(t, index, visible)
  local proxy = {}
  real[proxy] = t
  local mt = { __index = index or t, __newindex = deny, __metatable = visible or false }
  if not visible then
    hidden[proxy] = true
  end
  setmetatable(proxy, mt)
  return proxy
end

for _, name in ipairs({ "string", "math", "table", "coroutine", "redis", "cjson",
                        "bit", "cmsgpack" }) do
  local lib = rawget(G, name)
  if type(lib) == "table" then
    rawset(G, name, guard(lib))
  end
end

local strings = getmetatable("")
strings.__index = rawget(G, "string")
strings.__metatable = guard({ __index = rawget(G, "string") })

local api = G
local function lookup(_, k)
  local v = rawget(api, k)
  if v == nil then
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end
  return v
end
local env = guard(G, lookup, guard({ __index = lookup }))
rawset(G, "_G", env)

rawset(G, "rawset", function(t, k, v)
  if real[t] then
    error(READONLY, 0)
  end
  return rawset(t, k, v)
end)
rawset(G, "setmetatable", function(t, mt)
  if real[t] then
    error(READONLY, 0)
  end
  return setmetatable(t, mt)
end)
rawset(G, "getmetatable", function(v)
  if hidden[v] then
    return nil
  end
  return getmetatable(v)
end)
rawset(G, "rawget", function(t, k)
  return rawget(real[t] or t, k)
end)
local function walk(t, k)
  return next(real[t] or t, k)
end
rawset(G, "next", walk)
rawset(G, "pairs", function(t)
  if type(t) ~= "table" then
    error("bad argument #1 to 'pairs' (table expected, got " .. type(t) .. ")", 2)
  end
  return walk, t, nil
end)
rawset(G, "ipairs", function(t)
  return ipairs(real[t] or t)
end)

rawset(G, "loadstring", function(s, name)
  if type(s) == "string" and s:byte(1) == 27 then
    return loadstring(" " .. s, name or s)
  end
  local f, e = loadstring(s, name)
  if f then
    setfenv(f, env)
  end
  return f, e
end)
rawset(G, "load", function(reader, name)
  if type(reader) ~= "function" then
    error("bad argument #1 to 'load' (function expected, got " .. type(reader) .. ")", 2)
  end
  local first = true
  local f, e = load(function()
    local piece = reader()
    if first and type(piece) == "string" and piece ~= "" then
      first = false
      if piece:byte(1) == 27 then
        piece = " " .. piece
      end
    end
    return piece
  end, name)
  if f then
    setfenv(f, env)
  end
  return f, e
end)

return env, function(t) api = t end, guard
