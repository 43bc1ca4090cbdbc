"use strict";

const test = require("node:test");
const assert = require("node:assert");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const net = require("node:net");
const { ConsumerSettings, connectNats, connectOptions } = require("../events");
const { MeshError } = require("../errors");

test("NATS: the identity Initialize gives, and replies in the module's own inbox", () => {
  const anonymous = connectOptions("audit", { servers: ["nats://127.0.0.1:4222"] });
  assert.strictEqual(anonymous.inboxPrefix, "_INBOX.audit");
  assert.ok(!("user" in anonymous) && !("token" in anonymous) && !("authenticator" in anonymous));
  const user = connectOptions("audit", { servers: ["nats://n:4222"], user: "audit", password: "secret" });
  assert.deepStrictEqual([user.user, user.pass], ["audit", "secret"]);
  assert.strictEqual(connectOptions("audit", { servers: ["nats://n:4222"], token: "t0k" }).token, "t0k");
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), "audit-creds-"));
  const credentials = path.join(folder, "audit.creds");
  fs.writeFileSync(credentials, "-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n");
  try {
    const options = connectOptions("audit", { servers: ["nats://n:4222"], credentials_file: credentials });
    assert.strictEqual(typeof options.authenticator, "function");
  } finally {
    fs.rmSync(folder, { recursive: true, force: true });
  }
});

test("the consumer as Describe reports it, and the subjects it reads", () => {
  const consumer = new ConsumerSettings({ name: "audit--record", patterns: ["order.created", ">"], ackWaitSeconds: 30, maxAckPending: 16 });
  assert.deepStrictEqual(consumer.toProto(), {
    name: "audit--record",
    patterns: ["order.created", ">"],
    ack_wait: { seconds: 30, nanos: 0 },
    max_ack_pending: 16,
  });
  assert.deepStrictEqual(consumer.filters, ["mesh.evt.*.order.created", "mesh.evt.>", "mesh.replay.audit--record"]);
});

// A NATS server that answers the handshake of each connection with `answers[n]` (the last one
// for all later connections): "kick" as nats-server does to a connection in its handshake
// while it reloads its users, "welcome" as a server that takes it.
async function handshakeServer(answers) {
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    const answer = answers[Math.min(server.connections, answers.length - 1)];
    server.connections += 1;
    socket.write(`INFO {"server_id":"fake","version":"2.15.1","max_payload":1048576,"headers":true}\r\n`);
    socket.on("data", (data) => {
      if (!data.toString().includes("PING")) return;
      if (answer === "kick") socket.end("-ERR 'Authorization Violation'\r\n");
      else socket.write("PONG\r\n");
    });
    socket.on("error", () => undefined);
  });
  server.connections = 0;
  // Closed with every connection cut, so that nothing left open keeps the test's process alive.
  server.shutdown = () => {
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => server.close(resolve));
  };
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

test("NATS: a first connection dropped in its handshake is tried again, as a reload of users does", async () => {
  const server = await handshakeServer(["kick", "kick", "welcome"]);
  try {
    const nc = await connectNats("audit", { servers: [`127.0.0.1:${server.address().port}`], user: "audit", password: "p" });
    assert.strictEqual(server.connections, 3);
    await nc.close();
  } finally {
    await server.shutdown();
  }
});

test("NATS: a server that never takes the connection fails Initialize in bounded time, saying why", async () => {
  const server = await handshakeServer(["kick"]);
  const servers = [`127.0.0.1:${server.address().port}`];
  try {
    await assert.rejects(connectNats("audit", { servers, user: "audit", password: "p" }, { withinMs: 1000 }), (error) => {
      assert.ok(error instanceof MeshError);
      assert.strictEqual(error.reason, "MODULE_UNAVAILABLE");
      assert.match(error.message, /cannot reach NATS at 127\.0\.0\.1:\d+: .*Authorization Violation.* \(\d+ tries in 1 s\); check the NATS settings/);
      return true;
    });
    assert.ok(server.connections >= 2, `tried ${server.connections} times`);
  } finally {
    await server.shutdown();
  }
});
