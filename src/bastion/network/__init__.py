"""How the appliance is reached and keeps time: listen addresses, the NTP server."""
