"""One home per dataset: its items, its split, its rendering as conversations, its grader."""
