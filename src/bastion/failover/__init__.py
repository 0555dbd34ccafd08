"""Failover pairs: the change journal, the inter-appliance key, establishing a pair and
the backup's pull of the primary's data."""
