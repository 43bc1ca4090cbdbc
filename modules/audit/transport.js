// How the audit module listens and dials: mTLS with the credentials in MESH_TLS_DIR, or
// plaintext with MESH_INSECURE=1 and then only on loopback — the same rules as the Python
// SDK's mesh/protocol/transport.py, so that nothing in the mesh listens unauthenticated
// unless asked.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");

const TLS_DIR_ENV = "MESH_TLS_DIR";
const INSECURE_ENV = "MESH_INSECURE";
const FILES = { ca: "ca.pem", cert: "cert.pem", key: "key.pem" };
// How often the folder is looked at for renewed files: the coordinator renews at two thirds
// of a certificate's lifetime, so a second is far inside the margin.
const RELOAD_INTERVAL_MS = 1000;

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

class CredentialsError extends Error {}

// The credentials as they are now in `folder`; a certificate and key that do not belong
// together (a renewal caught between its two file replacements) are refused, never served.
function readCredentials(folder) {
  const pem = {};
  for (const [part, name] of Object.entries(FILES)) {
    const file = path.join(folder, name);
    try {
      pem[part] = fs.readFileSync(file);
    } catch (error) {
      throw new CredentialsError(
        `cannot read ${file}: ${error.code || error.message}; a running \`mesh up\` writes the module's credentials there`,
      );
    }
  }
  let matching;
  try {
    matching = new crypto.X509Certificate(pem.cert).checkPrivateKey(crypto.createPrivateKey(pem.key));
  } catch (error) {
    throw new CredentialsError(`the credentials in ${folder} cannot be read: ${error.message}`);
  }
  if (!matching) throw new CredentialsError(`${path.join(folder, FILES.cert)} does not belong to ${path.join(folder, FILES.key)}`);
  return pem;
}

// Changes whenever a file is rewritten (renewal replaces each file: a new inode).
function stampOf(folder) {
  try {
    return Object.values(FILES)
      .map((name) => fs.statSync(path.join(folder, name)))
      .map((stat) => `${stat.ino}:${stat.mtimeMs}`)
      .join(",");
  } catch {
    return "";
  }
}

// A grpc-js CertificateProvider over a credentials folder: the server takes the renewed
// certificate from the next TLS handshake on, without a restart. grpc-js's own
// FileWatcherCertificateProvider reads the certificate and the key independently, so a pair
// read between their replacements would make the server drop connections until its next
// read; this one keeps serving the last matching pair instead.
class FolderCertificates {
  constructor(folder) {
    this.folder = folder;
    this.current = readCredentials(folder);
    this.stamp = stampOf(folder);
    this.caListeners = new Set();
    this.identityListeners = new Set();
    this.timer = null;
  }

  caUpdate() {
    return { caCertificate: this.current.ca };
  }

  identityUpdate() {
    return { certificate: this.current.cert, privateKey: this.current.key };
  }

  // grpc-js registers its listener before it starts watching for context updates, so the
  // first update must come later (as grpc-js's own providers do), never from inside add*.
  addCaCertificateListener(listener) {
    this.caListeners.add(listener);
    process.nextTick(() => this.caListeners.has(listener) && listener(this.caUpdate()));
    this.watch();
  }

  removeCaCertificateListener(listener) {
    this.caListeners.delete(listener);
    this.unwatchWhenUnused();
  }

  addIdentityCertificateListener(listener) {
    this.identityListeners.add(listener);
    process.nextTick(() => this.identityListeners.has(listener) && listener(this.identityUpdate()));
    this.watch();
  }

  removeIdentityCertificateListener(listener) {
    this.identityListeners.delete(listener);
    this.unwatchWhenUnused();
  }

  watch() {
    if (this.timer) return;
    this.timer = setInterval(() => this.reread(), RELOAD_INTERVAL_MS);
    this.timer.unref();
  }

  unwatchWhenUnused() {
    if (this.caListeners.size || this.identityListeners.size || !this.timer) return;
    clearInterval(this.timer);
    this.timer = null;
  }

  reread() {
    const stamp = stampOf(this.folder);
    if (stamp === this.stamp) return;
    try {
      this.current = readCredentials(this.folder);
    } catch {
      return; // mid-rewrite or gone: keep serving what we have and look again at the next tick
    }
    this.stamp = stamp;
    for (const listener of this.identityListeners) listener(this.identityUpdate());
    for (const listener of this.caListeners) listener(this.caUpdate());
  }
}

// Plaintext is for one machine: any address but loopback is refused.
function refusePublicPlaintext(address) {
  const host = address.slice(0, Math.max(address.lastIndexOf(":"), 0)).replace(/^\[|\]$/g, "") || "0.0.0.0";
  const family = net.isIP(host) === 6 ? "ipv6" : "ipv4";
  if (host !== "localhost" && !(net.isIP(host) && LOOPBACK.check(host, family))) {
    throw new CredentialsError(
      `refusing to listen on ${address} without TLS: plaintext (${INSECURE_ENV}=1) is for this machine only; ` +
        `listen on 127.0.0.1, or set ${TLS_DIR_ENV} instead to serve mTLS`,
    );
  }
}

class Transport {
  // `folder`: the credentials folder, or null for plaintext.
  constructor(folder) {
    this.folder = folder;
    this.certificates = folder === null ? null : new FolderCertificates(folder);
  }

  // MESH_TLS_DIR, or plaintext with MESH_INSECURE=1; anything else is an error naming both.
  static fromEnv(env) {
    if (env[TLS_DIR_ENV]) return new Transport(env[TLS_DIR_ENV]);
    if (["1", "true", "yes"].includes(env[INSECURE_ENV] || "")) return new Transport(null);
    throw new CredentialsError(
      `no credentials: set ${TLS_DIR_ENV} to a folder with ca.pem, cert.pem and key.pem (\`mesh up\` does this ` +
        `for the modules it starts), or ${INSECURE_ENV}=1 for plaintext on this machine only`,
    );
  }

  get secure() {
    return this.folder !== null;
  }

  // Credentials for a server on `address`: mTLS requiring a client certificate from the mesh CA.
  serverCredentials(address) {
    if (!this.secure) {
      refusePublicPlaintext(address);
      return grpc.ServerCredentials.createInsecure();
    }
    // One provider for both the CA and the identity (the function names its two parameters
    // the other way round from how it uses them; the same provider for both is immune).
    return grpc.experimental.createCertificateProviderServerCredentials(this.certificates, this.certificates, true);
  }

  // Credentials for a channel: the certificate as it is now in the folder (renewals included).
  channelCredentials() {
    if (!this.secure) return grpc.credentials.createInsecure();
    const { ca, key, cert } = readCredentials(this.folder);
    return grpc.credentials.createSsl(ca, key, cert);
  }
}

module.exports = { Transport, refusePublicPlaintext };
