"""The stack's ROS topic names: one list for the nodes (`drive_stack.node_table` re-exports them) and the
library's bag readers (`dataset.ingest`). No imports."""

CLOCK = "/clock"
ODOMETRY = "/carla/hero/odometry"
OBJECTS = "/carla/hero/objects"
TRAFFIC_LIGHTS = "/carla/traffic_lights/status"  # CarlaTrafficLightStatusList by actor id: latched, on change only
TRAFFIC_LIGHTS_INFO = "/carla/traffic_lights/info"  # CarlaTrafficLightInfoList (actor transforms, trigger volumes)
WORLD_INFO = "/carla/world_info"  # carla_msgs/CarlaWorldInfo (map name + OpenDRIVE): the bridge, latched, always
GLOBAL_PLAN = "/carla/hero/global_plan"  # carla_msgs/CarlaRoute: the Leaderboard, latched, after /carla/hero/status
GLOBAL_PLAN_GNSS = "/carla/hero/global_plan_gnss"  # carla_msgs/CarlaGnssRoute (upstream leaves its coordinates empty)
CONTROL_CMD = "/carla/hero/vehicle_control_cmd"
# perception=sensors: the Leaderboard-allowed sensors the agent declares (the bridge names them /carla/hero/<id>)
GNSS = "/carla/hero/gnss"  # sensor_msgs/NavSatFix
IMU = "/carla/hero/imu"  # sensor_msgs/Imu (orientation: the hero's, ROS-handed)
SPEEDOMETER = "/carla/hero/speed"  # carla_msgs/CarlaSpeedometer (signed speed)
# ... and a detector the user provides (the pseudo-simulator's `ideal` one stands in): what it detects, in the
# pseudo sensors' types and frames
DETECTED_OBJECTS = "/drive_stack/detector/objects"  # derived_object_msgs/ObjectArray, frame map, track ids
DETECTED_LIGHTS = "/drive_stack/detector/traffic_lights/status"  # CarlaTrafficLightStatusList, latched, on change
DETECTED_LIGHTS_INFO = "/drive_stack/detector/traffic_lights/info"  # CarlaTrafficLightInfoList: where each light is
HERO_STATUS = "/carla/hero/status"
EXPERT_CMD = "/drive_stack/expert/vehicle_control_cmd"  # the privileged expert (pseudo-simulator only)
EXPERT_PLAN = "/drive_stack/expert/plan"  # its plan at each tick: a takeover's training labels (`takeover ingest`)
SCENE = "/drive_stack/scene"
BEV = "/drive_stack/bev"
PLAN = "/drive_stack/plan"
MARKERS = "/drive_stack/markers"  # visualization_msgs/MarkerArray (frame map): the views node, for RViz / Foxglove
PLANNER_CMD = "/drive_stack/planner/vehicle_control_cmd"
REASONING = "/drive_stack/reasoning"
TAKEOVER = "/drive_stack/takeover"
STATUS = "/drive_stack/status"
NODE_READY = "/drive_stack/node_ready"  # std_msgs/String (latched per publisher): a node's name once it is up
# std_msgs/String (latched per publisher): "<node> <topic> <topic> ...", every subscription the node holds (a topic
# once per reader): the pseudo-simulator starts a route only when its per-tick writers have matched all of them
NODE_READS = "/drive_stack/node_reads"
DIAGNOSTICS = "/diagnostics"  # diagnostic_msgs/DiagnosticArray: the takeover monitor's minimal-risk manoeuvre
