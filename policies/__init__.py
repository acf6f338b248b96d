"""Things that decide or predict and learn online: cascades, supervision, continual learners."""
