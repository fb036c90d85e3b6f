"""drive_stack: ROS 2 nodes of the drive-stack (thin adapters over the `drivesim` library)."""
