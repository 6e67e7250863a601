"""When, where and with what a photo was taken: EXIF, offline place names, and the search box's filters."""
