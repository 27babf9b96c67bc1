"""`make bench`: every benchmark the issues name, with a baseline measured in the same run."""
