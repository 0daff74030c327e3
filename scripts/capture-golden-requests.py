#!/usr/bin/env python3
"""Captures the requests real Kafka clients send, for Tests/KafkaWireTests/Golden.

Runs a meridian broker whose advertised listener is a recording proxy, drives kcat,
confluent-kafka and kafka-python through the proxy (metadata, produce, fetch, a consumer
group with commits), and writes the first frame of each (client, API, version) as
<client>/<Api>-v<version>.bin (size prefix included, correlation id as sent).

Run once from the repository root after `swift build`:
  .venv/bin/python scripts/capture-golden-requests.py
The captured files are committed; tests decode them and do not need the clients.
"""
import os, shutil, socket, struct, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "KafkaWireTests", "Golden")
API_NAMES = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
             10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
             15: "DescribeGroups", 16: "ListGroups", 18: "ApiVersions", 19: "CreateTopics", 22: "InitProducerId",
             32: "DescribeConfigs", 60: "DescribeCluster"}

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

class Recorder:
    def __init__(self):
        self.client = None
        self.frames = {}
        self.lock = threading.Lock()

    def record(self, data):
        with self.lock:
            if self.client is None or len(data) < 8:
                return
            key, version = struct.unpack(">hh", data[4:8])
            self.frames.setdefault((self.client, key, version), data)

def pump(src, dst, recorder=None):
    buf = b""
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            dst.sendall(chunk)
            if recorder:
                buf += chunk
                while len(buf) >= 4:
                    n = struct.unpack(">i", buf[:4])[0]
                    if len(buf) < 4 + n:
                        break
                    recorder.record(buf[:4 + n])
                    buf = buf[4 + n:]
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass

def proxy(listen_port, target_port, recorder):
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port)); srv.listen(64)
    def serve():
        while True:
            c, _ = srv.accept()
            u = socket.create_connection(("127.0.0.1", target_port))
            threading.Thread(target=pump, args=(c, u, recorder), daemon=True).start()
            threading.Thread(target=pump, args=(u, c), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()

def main():
    meridian = os.path.join(ROOT, ".build", "debug", "meridian")
    broker_port, proxy_port = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="meridian-golden-")
    broker = subprocess.Popen([meridian, "broker", "--data-dir", data, "--listener", f"PLAINTEXT://127.0.0.1:{broker_port}",
                               "--advertised-listener", f"PLAINTEXT://127.0.0.1:{proxy_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rec = Recorder()
    proxy(proxy_port, broker_port, rec)
    boot = f"127.0.0.1:{proxy_port}"
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", broker_port)).close()
                break
            except OSError:
                time.sleep(0.1)
        rec.client = "kcat"
        subprocess.run(["kcat", "-b", boot, "-L"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["kcat", "-b", boot, "-P", "-t", "golden", "-K:"], input=b"k1:v1\nk2:v2\n", check=True)
        subprocess.run(["kcat", "-b", boot, "-C", "-t", "golden", "-o", "beginning", "-e"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["kcat", "-b", boot, "-G", "golden-kcat", "golden", "-e", "-X", "auto.offset.reset=earliest"],
                       check=True, stdout=subprocess.DEVNULL, timeout=60)

        rec.client = "confluent-kafka"
        import confluent_kafka
        p = confluent_kafka.Producer({"bootstrap.servers": boot, "enable.idempotence": True})
        for i in range(3): p.produce("golden", key=b"k%d" % i, value=b"v%d" % i)
        p.flush(10)
        c = confluent_kafka.Consumer({"bootstrap.servers": boot, "group.id": "golden-ck", "auto.offset.reset": "earliest"})
        c.subscribe(["golden"])
        got = 0
        deadline = time.time() + 30
        while got < 5 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error(): got += 1
        c.commit(asynchronous=False)
        c.close()

        rec.client = "kafka-python"
        import kafka
        kp = kafka.KafkaProducer(bootstrap_servers=boot)
        for i in range(3): kp.send("golden", key=b"k%d" % i, value=b"v%d" % i)
        kp.flush(); kp.close()
        kc = kafka.KafkaConsumer("golden", bootstrap_servers=boot, group_id="golden-kp", auto_offset_reset="earliest",
                                 consumer_timeout_ms=5000)
        for _ in kc: pass
        kc.commit(); kc.close()
        rec.client = None
    finally:
        broker.terminate(); broker.wait()
        shutil.rmtree(data, ignore_errors=True)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for (client, key, version), frame in sorted(rec.frames.items()):
        d = os.path.join(OUT, client)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{API_NAMES.get(key, 'Api%d' % key)}-v{version}.bin"), "wb") as f:
            f.write(frame)
    print(f"wrote {len(rec.frames)} frames to {OUT}")

if __name__ == "__main__":
    sys.exit(main())
