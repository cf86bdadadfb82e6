-- A function, included by the scripts that read which story a log entry names.
--
-- subject(record): the `subject` (the story id) of a log record, read with cjson; nil
-- for an entry that is no update (not JSON, or no string subject), which the readers
-- report rather than fail on.
local function subject(record)
  local ok, doc = pcall(cjson.decode, record)
  if ok and type(doc) == 'table' and type(doc['subject']) == 'string' then
    return doc['subject']
  end
  return nil
end
