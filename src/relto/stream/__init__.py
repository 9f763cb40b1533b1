"""The live stream: one shared tail per collection, filtered per subscriber by the policy engine."""
