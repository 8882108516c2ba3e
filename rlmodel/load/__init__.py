"""Load generation: JMeter runs against the test app, and their results parsed into summaries."""
