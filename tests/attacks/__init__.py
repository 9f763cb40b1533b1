"""Attacks on trust (issue 9): a writer of one nation trying to widen, take or probe what belongs to another."""
