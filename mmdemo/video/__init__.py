"""Videos as moments: scenes found by frame change, a keyframe each (indexing video is issue #37)."""
