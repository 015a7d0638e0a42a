"""MQTT device simulator: plant signals published as JSON or Sparkplug B (see __main__)."""
