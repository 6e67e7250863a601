"""Words in pictures: text read at index time (OCR), normalised, stored and searched forgivingly."""
