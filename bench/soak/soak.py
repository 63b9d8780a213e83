#!/usr/bin/env python3
"""Soak run of `policygrid serve` under mixed load (stdlib only; see README.md beside it).

python3 soak.py --base http://127.0.0.1:PORT --pid SERVER_PID --data DATADIR --minutes 25 --out DIR
Drives Type 2/3/4/5, policy churn, decision queries, bad requests and disconnecting callers at a
moderate rate; samples server/worker resources every 30 s into DIR/samples.jsonl.
"""
import argparse, io, json, os, random, socket, sqlite3, statistics, threading, time, urllib.request, urllib.error, zipfile

A = argparse.ArgumentParser()
A.add_argument("--base", required=True); A.add_argument("--pid", type=int, required=True)
A.add_argument("--data", required=True); A.add_argument("--minutes", type=float, default=25)
A.add_argument("--out", required=True); A.add_argument("--sample", type=float, default=30)
A.add_argument("--cache", default="/var/tmp/policygrid-bundles", help="the server's PolicyGrid:Runtime:Bundles:CacheDirectory")
A.add_argument("--tmp", default=os.environ.get("TMPDIR", "/tmp"), help="the server's TMPDIR")
args = A.parse_args()
BASE = args.base.rstrip("/")
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HOST, PORT = BASE.split("//")[1].split(":")[0], int(BASE.rsplit(":", 1)[1])
STOP = threading.Event()
LOCK = threading.Lock()
STATS = {}          # (op, status) -> count
FIVEXX = []         # (time, op, status, body)
UNEXPECTED = []
LAT = []            # fixed probe latencies of the current window (ms)

def count(op, status):
    with LOCK:
        STATS[(op, status)] = STATS.get((op, status), 0) + 1

def req(op, method, path, body=None, raw=None, ctype="application/json", timeout=60, expect=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    r = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None: r.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            status, text = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    except Exception as e:
        status, text = "exc:" + type(e).__name__, str(e).encode()
    count(op, status)
    if isinstance(status, int) and status >= 500 or isinstance(status, str):
        with LOCK: FIVEXX.append((time.time(), op, status, text[:400].decode("utf-8", "replace")))
    elif expect is not None and status not in expect:
        with LOCK: UNEXPECTED.append((time.time(), op, status, text[:300].decode("utf-8", "replace")))
    try: js = json.loads(text) if text else None
    except Exception: js = None
    return status, js

def bundle(src):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z: z.writestr("code/function.py", src)
    st, js = req("bundle", "POST", "/bundles", raw=b.getvalue(), ctype="application/zip", expect=[200])
    return js["data"]["code"]

CTX_SRC = '''
class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.rule_id = rule_id; self.tag = %r
    def eval(self, parameters, input_data, context):
        import time
        if input_data.get("sleep"): time.sleep(float(input_data["sleep"]))
        if input_data.get("raise"): raise ValueError("asked to raise")
        context["n"] = context.get("n", 0) + 1
        if input_data.get("blob"): context["blob"] = "x" * int(input_data["blob"])
        return {"n": context["n"], "tag": self.tag, "rule": self.rule_id}
    def management(self, action, data):
        return {"action": action, "tag": self.tag}
'''

def policy_doc(name, version, tag, code, params=None):
    return {"name": name, "version": version, "release_tag": tag, "code": code, "code_type": "python",
            "type": "python_class_v1", "tags": "soak", "metadata": {"soak": True},
            "policy_parameters": params or {}, "resource_estimates": {"timeout_seconds": 5}}

def setup():
    for p in ["ip_allowlist", "rate_limiter", "config_validator", "all_of"]:
        d = json.load(open(os.path.join(REPO, "samples", "policies", p, "manifest.json")))
        b = io.BytesIO()
        with zipfile.ZipFile(b, "w") as z: z.write(os.path.join(REPO, "samples", "policies", p, "code", "function.py"), "code/function.py")
        st, js = req("bundle", "POST", "/bundles", raw=b.getvalue(), ctype="application/zip")
        d["code"] = js["data"]["code"]
        print("create", p, req("setup", "POST", "/policy", d)[0])
    print("create soak_ctx", req("setup", "POST", "/policy", policy_doc("soak_ctx", "1.0", "stable", bundle(CTX_SRC % "base")))[0])

def loop(fn, delay):
    def run():
        i = 0
        while not STOP.is_set():
            try: fn(i)
            except Exception as e:
                with LOCK: UNEXPECTED.append((time.time(), fn.__name__, "client-exc", repr(e)[:300]))
            i += 1
            STOP.wait(delay)
    t = threading.Thread(target=run, name=fn.__name__, daemon=True); t.start(); return t

def probe(i):
    t0 = time.perf_counter()
    st, _ = req("probe", "POST", "/executor/local/execute_policy", {"policy_rule_uri": "ip_allowlist:1.0-beta", "input_data": {"ip": "10.0.0.1"}}, expect=[200])
    ms = (time.perf_counter() - t0) * 1000
    with LOCK: LAT.append(ms)

def type2(i):
    r = random.random()
    if r < 0.3:
        req("t2_ip", "POST", "/executor/local/execute_policy", {"policy_rule_uri": "ip_allowlist:1.0-beta", "input_data": {"ip": f"10.0.{i%3}.{i%7}"}, "parameters": {"local_allowlist": [f"10.0.0.{i%5}"]}}, expect=[200])
    elif r < 0.5:
        req("t2_rl_ctx", "POST", "/executor/local/execute_policy", {"policy_rule_uri": "rate_limiter:1.0-stable", "input_data": {"client_id": f"c{random.randrange(50)}"}, "context_key": f"tenant-{random.randrange(20000)}"}, expect=[200])
    elif r < 0.65:
        req("t2_ctx", "POST", "/executor/local/execute_policy", {"policy_rule_uri": "soak_ctx:1.0-stable", "input_data": {"blob": random.choice([0, 0, 100, 2000])}, "context_key": f"k{i}-{random.randrange(10**9)}"}, expect=[200])
    elif r < 0.75:
        req("t2_cfg", "POST", "/executor/local/execute_policy", {"policy_rule_uri": "config_validator:1.0-stable", "input_data": {"name": "svc", "image": "registry.example.com/a:1", "replicas": i % 20}}, expect=[200])
    elif r < 0.85:
        req("t2_mgmt", "POST", "/executor/local/management", {"policy_rule_uri": "ip_allowlist:1.0-beta", "action": "get_state", "data": {}}, expect=[200])
    elif r < 0.9:
        req("t2_raise", "POST", "/executor/local/execute_policy", {"policy_rule_uri": "soak_ctx:1.0-stable", "input_data": {"raise": True}}, expect=[422])
    else:
        req("t2_nokey", "POST", "/executor/local/execute_policy", {"policy_rule_uri": "rate_limiter:1.0-stable", "input_data": {"client_id": "x"}}, expect=[200])

CHURN_N = [0]
def churn(i):
    # create -> run (with context keys) -> update code -> run -> new version -> retire -> 410 -> delete -> 404
    n = i % 40      # names are reused: deleted names come back
    name = f"churn{n}"
    code = bundle(CTX_SRC % f"v{i}-a")
    st, _ = req("churn_create", "POST", "/policy", policy_doc(name, "1.0", "t", code), expect=[200, 409])
    uri = f"{name}:1.0-t"
    for k in range(5):
        req("churn_exec", "POST", "/executor/local/execute_policy", {"policy_rule_uri": uri, "input_data": {}, "context_key": f"churn-{i}-{k}"}, expect=[200])
    req("churn_update", "PUT", f"/policy/{uri}", {"$set": {"code": bundle(CTX_SRC % f"v{i}-b")}}, expect=[200])
    req("churn_exec", "POST", "/executor/local/execute_policy", {"policy_rule_uri": uri, "input_data": {}}, expect=[200])
    req("churn_param", "PUT", f"/policy/{uri}", {"$set": {"policy_parameters.p": i}}, expect=[200])
    req("churn_exec", "POST", "/executor/local/execute_policy", {"policy_rule_uri": uri, "input_data": {}}, expect=[200])
    uri2 = f"{name}:1.{i%5+1}-t"
    req("churn_newver", "POST", "/policy", policy_doc(name, f"1.{i%5+1}", "t", code), expect=[200, 409])
    req("churn_exec2", "POST", "/executor/local/execute_policy", {"policy_rule_uri": uri2, "input_data": {}}, expect=[200])
    req("churn_retire", "PUT", f"/policy/{uri}", {"$set": {"status": "retired"}}, expect=[200])
    req("churn_exec_retired", "POST", "/executor/local/execute_policy", {"policy_rule_uri": uri, "input_data": {}}, expect=[410])
    req("churn_delete", "DELETE", f"/policy/{uri}", expect=[200])
    req("churn_delete", "DELETE", f"/policy/{uri2}", expect=[200])
    req("churn_exec_deleted", "POST", "/executor/local/execute_policy", {"policy_rule_uri": uri, "input_data": {}}, expect=[404])

def functions(i):
    name = f"fn{i % 30}"
    pol = random.choice(["rate_limiter:1.0-stable", "soak_ctx:1.0-stable", "ip_allowlist:1.0-beta"])
    req("fn_deploy", "POST", "/function/deployments/create/local", {"name": name, "policy_rule_uri": pol, "replicas": random.choice([1, 1, 2])}, expect=[200])
    inp = {"client_id": "a"} if pol.startswith("rate") else {"ip": "10.0.0.1"} if pol.startswith("ip") else {"blob": 50}
    for k in range(15):
        req("fn_call", "POST", f"/function/call_function/{name}", inp, expect=[200])
    req("fn_mgmt", "POST", f"/function/{name}/management", {"action": "get_state", "data": {}}, expect=[200])
    req("fn_get", "GET", f"/function/{name}", expect=[200])
    req("fn_query", "POST", "/function/query?limit=10", {}, expect=[200])
    req("fn_remove", "DELETE", f"/function/deployments/remove/{name}", expect=[200])
    req("fn_call_removed", "POST", f"/function/call_function/{name}", inp, expect=[404])

def graphs(i):
    a, l, g = f"ga{i%10}", f"gl{i%10}", f"gg{i%10}"
    req("g_fn", "POST", "/function/deployments/create/local", {"name": a, "policy_rule_uri": "ip_allowlist:1.0-beta"}, expect=[200])
    req("g_fn", "POST", "/function/deployments/create/local", {"name": l, "policy_rule_uri": "rate_limiter:1.0-stable", "policy_rule_parameters": {"limit": 1000, "window_seconds": 60}}, expect=[200])
    req("g_fn", "POST", "/function/deployments/create/local", {"name": g, "policy_rule_uri": "all_of:1.0-stable"}, expect=[200])
    gu = f"soakg{i%10}:1.0-beta"
    req("g_create", "POST", "/graphs", {"graph_name": f"soakg{i%10}", "graph_version": "1.0", "graph_release_tag": "beta",
        "graph_function_ids": [a, l, g], "graph_connection_data": {a: [g], l: [g]}}, expect=[200])
    for k in range(10):
        req("g_run", "POST", "/graph/execute_graph", {"graph_uri": gu, "input_data": {"ip": "10.0.0.1", "client_id": f"c{k}"}, "trace": k % 3 == 0}, expect=[200])
    st, js = req("g_async", "POST", "/graph/execute_graph", {"graph_uri": gu, "input_data": {"ip": "10.0.0.1", "client_id": "z"}, "async": True}, expect=[200])
    if js and js.get("data"):
        req("g_exec_get", "GET", f"/graph/executions/{js['data']['execution_id']}", expect=[200])
    req("g_diagram", "GET", f"/graphs/{gu}/diagram", expect=[200])
    req("g_delete", "DELETE", f"/graphs/{gu}", expect=[200])
    for f in (a, l, g):
        req("g_fn_remove", "DELETE", f"/function/deployments/remove/{f}", expect=[200])

def jobs(i):
    st, js = req("job_submit", "POST", "/jobs/submit/local", {"name": f"soak{i}", "policy_rule_uri": "ip_allowlist:1.0-beta", "policy_rule_parameters": {}, "node_selector": {}, "inputs": {"ip": "10.0.0.1"}}, expect=[200])
    if js and js.get("data"):
        jid = js["data"]["job_id"]
        if i % 5 == 4:
            req("job_cancel", "DELETE", f"/jobs/{jid}", expect=[200])
        else:
            st, js = req("job_wait", "GET", f"/jobs/{jid}?wait=60", expect=[200], timeout=90)
            if js and js["data"]["status"] != "succeeded":
                with LOCK: UNEXPECTED.append((time.time(), "job_status", js["data"]["status"], json.dumps(js["data"])[:300]))

def queries(i):
    r = i % 4
    if r == 0: req("dq", "POST", "/decisions/query?limit=50", {"policy_rule_uri": "ip_allowlist:1.0-beta"}, expect=[200])
    elif r == 1: req("dq", "POST", "/decisions/query?limit=20&sort=at:desc", {"outcome": "error"}, expect=[200])
    elif r == 2: req("pq", "POST", "/policy/query?limit=50", {"tags": {"$regex": "soak"}}, expect=[200])
    else: req("jq", "POST", "/jobs/query?limit=20", {"status": "succeeded"}, expect=[200])

def bad(i):
    r = i % 8
    if r == 0: req("bad_json", "POST", "/executor/local/execute_policy", raw=b"{not json", expect=[400])
    elif r == 1: req("bad_unknown", "POST", "/executor/local/execute_policy", {"policy_rule_uri": "nope:1.0-x", "input_data": {}}, expect=[404])
    elif r == 2: req("bad_input", "POST", "/executor/local/execute_policy", {"policy_rule_uri": "ip_allowlist:1.0-beta", "input_data": {"ip": "zzz"}}, expect=[400])
    elif r == 3: req("bad_filter", "POST", "/decisions/query", {"at": {"$where": "1"}}, expect=[400])
    elif r == 4: req("bad_uri", "GET", "/policy/no-colon", expect=[400, 404])
    elif r == 5: req("bad_fn", "POST", "/function/call_function/doesnotexist", {}, expect=[404])
    elif r == 6: req("bad_ctxkey", "POST", "/executor/local/execute_policy", {"policy_rule_uri": "soak_ctx:1.0-stable", "input_data": {}, "context_key": "function:x#0"}, expect=[400])
    else: req("bad_policy", "POST", "/policy", {"name": "x"}, expect=[400])

def disconnect(i):
    # send a slow call (policy sleeps) and hang up before it answers; or send half a body and hang up
    body = json.dumps({"policy_rule_uri": "soak_ctx:1.0-stable", "input_data": {"sleep": 0.5}, "context_key": f"dc{i%50}"}).encode()
    s = socket.create_connection((HOST, PORT), timeout=5)
    head = f"POST /executor/local/execute_policy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    if i % 3 == 0:
        s.sendall(head + body[: len(body) // 2])
    elif i % 3 == 1:
        s.sendall(head + body); time.sleep(0.05)
    else:
        s.sendall(head + body); time.sleep(0.2)
    s.close(); count("disconnect", i % 3)

def proc_status(pid):
    d = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, v = line.split(":", 1)
            if k in ("VmRSS", "VmHWM", "Threads", "VmSize"): d[k] = int(v.split()[0]) if k != "Threads" else int(v)
        d["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except Exception as e: d["err"] = str(e)
    return d

def descendants(pid):
    kids, out = {}, []
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            st = open(f"/proc/{p}/stat").read(); ppid = int(st.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(p))
        except Exception: pass
    todo = [pid]
    while todo:
        c = todo.pop()
        for k in kids.get(c, []): out.append(k); todo.append(k)
    return out

def dirsize(path):
    tot, n = 0, 0
    for root, ds, fs in os.walk(path):
        for f in fs:
            try: tot += os.lstat(os.path.join(root, f)).st_size; n += 1
            except Exception: pass
    return tot, n

def sample(t0):
    s = {"t": round(time.time() - t0), "server": proc_status(args.pid)}
    ws = []
    for p in descendants(args.pid):
        try: cmd = open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ")[:80].decode("utf-8", "replace")
        except Exception: continue
        st = proc_status(p); st["pid"] = p; st["cmd"] = cmd; ws.append(st)
    s["children"] = len(ws)
    s["children_rss_kb"] = sum(w.get("VmRSS", 0) for w in ws)
    s["children_fds"] = sum(w.get("fds", 0) for w in ws)
    s["children_cmds"] = {}
    for w in ws:
        k = w["cmd"][:40]; s["children_cmds"][k] = s["children_cmds"].get(k, 0) + 1
    d = args.data
    for f in ("policygrid.db", "policygrid.db-wal", "policygrid.db-shm"):
        try: s[f] = os.path.getsize(os.path.join(d, f))
        except Exception: s[f] = None
    s["bundles"] = dirsize(os.path.join(d, "bundles"))
    s["jobs_dir"] = dirsize(os.path.join(d, "jobs"))
    s["datadir"] = dirsize(d)
    s["cache"] = dirsize(args.cache) if os.access(args.cache, os.R_OK) else None
    s["tmp_entries"] = len(os.listdir(args.tmp))
    try:
        c = sqlite3.connect(f"file:{d}/policygrid.db?mode=ro", uri=True, timeout=10)
        tabs = [r[0] for r in c.execute("select name from sqlite_master where type='table'")]
        s["rows"] = {t: c.execute(f"select count(*) from {t}").fetchone()[0] for t in tabs}
        c.close()
    except Exception as e: s["rows"] = str(e)
    with LOCK:
        lat = sorted(LAT); LAT.clear()
        s["stats"] = {f"{k[0]}:{k[1]}": v for k, v in sorted(STATS.items(), key=lambda kv: str(kv[0]))}
        s["fivexx"] = len(FIVEXX); s["unexpected"] = len(UNEXPECTED)
    if lat:
        s["probe_n"] = len(lat); s["p50"] = round(lat[len(lat)//2], 2); s["p99"] = round(lat[int(len(lat)*0.99)], 2)
    return s

def main():
    os.makedirs(args.out, exist_ok=True)
    setup()
    t0 = time.time()
    out = open(os.path.join(args.out, "samples.jsonl"), "a")
    out.write(json.dumps(sample(t0)) + "\n"); out.flush()
    threads = [loop(probe, 0.1)]
    for k in range(8): threads.append(loop(type2, 0.01))
    threads += [loop(churn, 0.5), loop(functions, 0.3), loop(graphs, 0.5), loop(jobs, 2.0), loop(jobs, 3.0),
                loop(queries, 0.2), loop(bad, 0.1), loop(disconnect, 0.3)]
    end = t0 + args.minutes * 60
    while time.time() < end:
        time.sleep(min(args.sample, max(0, end - time.time())))
        s = sample(t0); out.write(json.dumps(s) + "\n"); out.flush()
        print(f"t={s['t']} rss={s['server'].get('VmRSS')}kB thr={s['server'].get('Threads')} fds={s['server'].get('fds')} kids={s['children']} kidsrss={s['children_rss_kb']} db={s['policygrid.db']} wal={s['policygrid.db-wal']} rows={s['rows']} p50={s.get('p50')} p99={s.get('p99')} 5xx={s['fivexx']} unexp={s['unexpected']}", flush=True)
    STOP.set()
    for t in threads: t.join(timeout=120)
    time.sleep(5)
    s = sample(t0); s["final"] = True; out.write(json.dumps(s) + "\n"); out.close()
    json.dump({"fivexx": FIVEXX, "unexpected": UNEXPECTED, "stats": {f"{k[0]}:{k[1]}": v for k, v in STATS.items()}}, open(os.path.join(args.out, "errors.json"), "w"), indent=1)
    print("done")

main()
