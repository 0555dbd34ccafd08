"""What the appliance and the vendor's update service share: versions, release packages,
download keys.
"""
