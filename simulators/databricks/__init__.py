"""A local stand-in for the Databricks workspace REST calls the appliance makes (tests only)."""
