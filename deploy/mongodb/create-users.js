// The services' MongoDB users for deploy/docker-compose.yml, created by the image's entrypoint
// (as the root user) when the data volume is first initialised. The daemon writes the read
// model; the patient-facing reports API may only read it.
const admin = db.getSiblingDB("admin");
admin.createUser({
  user: "cdc_daemon",
  pwd: process.env.MONGO_DAEMON_PASSWORD,
  roles: [{ role: "readWrite", db: "myhealth" }],
});
admin.createUser({
  user: "reports_api",
  pwd: process.env.MONGO_REPORTS_PASSWORD,
  roles: [{ role: "read", db: "myhealth" }],
});
