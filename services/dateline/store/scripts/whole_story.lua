-- A function, included by the scripts that read a story state whole.
--
-- whole(state key, statements key): the state as one JSON document, its statements
-- spliced into its empty `"statements":{}`; false if there is no state. A state of
-- shape 2 and older holds its statements inline and its list is empty: it is returned
-- as stored. The splice finds a fixed needle (a plain find, not a pattern), and leaves
-- every byte the projector wrote as it was: decoding and encoding the state with cjson
-- would rewrite its numbers and escapes. The needle cannot occur inside a JSON string,
-- where quotes are escaped.
local function whole(state_key, statements_key)
  local raw = redis.call('GET', state_key)
  if not raw then return false end
  local said = redis.call('LRANGE', statements_key, 0, -1)
  if #said == 0 then return raw end
  local at = string.find(raw, '"statements":{}', 1, true)
  if not at then return raw end
  return string.sub(raw, 1, at + 13) .. table.concat(said, ',') .. string.sub(raw, at + 14)
end
