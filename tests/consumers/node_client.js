// A Node consumer: @grpc/grpc-js with the proto loaded by @grpc/proto-loader from proto/ alone.
// Usage: node node_client.js PROTO_DIR ADDRESS (NODE_PATH points at the installed packages); prints one JSON line.
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const [protoDir, address] = process.argv.slice(2);
const definition = loader.loadSync("schedule/v1/schedule_service.proto", {
  includeDirs: [protoDir],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const schedule = grpc.loadPackageDefinition(definition).schedule.v1;
const client = new schedule.ScheduleService(address, grpc.credentials.createInsecure());

function call(method, request) {
  return new Promise((resolve, reject) => client[method](request, (error, response) => (error ? reject(error) : resolve(response))));
}

(async () => {
  const registered = await call("RegisterTask", {
    name: "node-consumer",
    schedule: "*/10 * * * *",
    handler: "http",
    metadata: { fields: { url: { stringValue: "http://127.0.0.1:9/hook" } } },
  });
  const listed = await call("ListTasks", {});
  let code = null;
  try {
    await call("RegisterTask", { name: "bad", schedule: "* * *", handler: "http" });
  } catch (error) {
    code = error.code;
  }
  console.log(JSON.stringify({
    id: registered.task.id,
    overlap: registered.task.overlap_policy,
    listed: listed.tasks.map((t) => t.name),
    code,
  }));
  client.close();
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
