-- Read one story's state whole, its statements spliced in.
--
-- KEYS[1] the story's state, KEYS[2] its statements list.
-- ARGV: none.
-- Returns the state as one JSON document, or false if the story has none.
-- include: whole_story.lua
return whole(KEYS[1], KEYS[2])
