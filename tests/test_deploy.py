"""deploy/k8s (kustomize) and deploy/Dockerfile: rendered, schema-validated, and checked against aco_bert.serve.

The manifests are rendered by :func:`render`, a small pure-Python kustomize for exactly the features they use
(resources, components, strategic-merge patches, images, namespace), so CI needs no kubectl; where ``kubectl`` is
installed its ``kubectl kustomize`` output must equal ours. Every object is validated against the Kubernetes 1.30
OpenAPI schema (``kubernetes_validate``, strict: unknown fields fail), and the parts that must agree with the code
are checked against the code: the container args parse with the server's own CLI, the ConfigMap's serve.yaml loads
as a ServeConfig, the probe paths are routes of the real app (and answer as the probes expect), the ports agree.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
TARGETS = ["base", "overlays/dev", "overlays/proxy"]
KUSTOMIZE_KEYS = {"apiVersion", "kind", "resources", "components", "patches", "images", "namespace"}
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}  # strategic-merge list keys (k8s patchMergeKey)
IMAGE_TARGETS = {"aco-bert-serve": "serve", "aco-bert-bundle": "bundle-image",
                 "aco-bert-serve-bundled": "serve-bundled"}  # image name -> deploy/Dockerfile --target
CRD_KINDS = {"ServiceMonitor"}  # not in the core schema; checked by hand below


# -- a tiny kustomize ---------------------------------------------------------------------------------------------

def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def merge(base: dict, patch: dict) -> dict:
    """Strategic merge patch: maps merge, ``null`` deletes, keyed lists merge by key (``$patch: delete`` drops an
    item), other lists are replaced."""
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        elif isinstance(v, list) and k in MERGE_KEYS and isinstance(out.get(k), list):
            key, items, first = MERGE_KEYS[k], out[k], []
            for item in v:  # the patch's items first, in its order, then the untouched ones (as kustomize does)
                at = next((i for i, x in enumerate(items) if x.get(key) == item.get(key)), None)
                if item.get("$patch") == "delete":
                    assert at is not None, f"$patch: delete of {k} {item.get(key)!r}: no such item"
                    items.pop(at)
                else:
                    first.append(copy.deepcopy(item) if at is None else merge(items.pop(at), item))
            out[k] = first + items
        else:
            out[k] = copy.deepcopy(v)
    return out


def split_image(image: str) -> tuple[str, str | None]:
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    return name, tag or None


def pod_containers(obj: dict) -> list[dict]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("initContainers", []) + spec.get("containers", [])


def render(path: Path, objs: list[dict] | None = None) -> list[dict]:
    """A Kustomization (``objs`` None) or a Component applied to ``objs``: resources, then components, then this
    level's patches, images and namespace -- kustomize's order."""
    k = yaml.safe_load((path / "kustomization.yaml").read_text())
    assert set(k) <= KUSTOMIZE_KEYS, f"{path}: the test renderer does not know {sorted(set(k) - KUSTOMIZE_KEYS)}"
    assert (k["kind"] == "Component") == (objs is not None), f"{path}: Component only under components:"
    objs = [] if objs is None else objs
    for r in k.get("resources", []):
        objs = objs + (render(path / r) if (path / r).is_dir() else load_docs(path / r))
    for c in k.get("components", []):
        objs = render(path / c, objs)
    for p in k.get("patches", []):
        patch = yaml.safe_load((path / p["path"]).read_text())
        hits = [i for i, o in enumerate(objs)
                if (o["kind"], o["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])]
        assert len(hits) == 1, f"{path / p['path']}: matches {len(hits)} objects"
        objs[hits[0]] = merge(objs[hits[0]], patch)
    for im in k.get("images", []):
        for o in objs:
            for c in pod_containers(o):
                name, tag = split_image(c["image"])
                if name == im["name"]:
                    name, tag = im.get("newName", name), im.get("newTag", tag)
                    c["image"] = f"{name}:{tag}" if tag else name
    if "namespace" in k:
        for o in objs:
            o["metadata"]["namespace"] = k["namespace"]
    return objs


def by_kind(objs: list[dict]) -> dict[str, dict]:
    out = {o["kind"]: o for o in objs}
    assert len(out) == len(objs), "one object per kind expected in these manifests"
    return out


@pytest.fixture(scope="module", params=TARGETS)
def rendered(request) -> tuple[str, dict[str, dict]]:
    return request.param, by_kind(render(K8S / request.param))


# -- rendering and schema -----------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed (the Python renderer is CI's)")
@pytest.mark.parametrize("target", TARGETS)
def test_python_renderer_equals_kubectl_kustomize(target):
    out = subprocess.run(["kubectl", "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    theirs = by_kind([d for d in yaml.safe_load_all(out.stdout) if d])
    assert by_kind(render(K8S / target)) == theirs


def test_every_object_validates_against_kubernetes_1_30(rendered):
    import kubernetes_validate

    target, objs = rendered
    assert {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(objs)
    for kind, obj in objs.items():
        if kind not in CRD_KINDS:
            kubernetes_validate.validate(obj, "1.30", strict=True)  # raises on any schema error / unknown field
    with pytest.raises(kubernetes_validate.ValidationError):  # the validator really is strict
        bad = copy.deepcopy(objs["Deployment"])
        bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
        kubernetes_validate.validate(bad, "1.30", strict=True)


def test_selectors_names_and_namespaces_agree(rendered):
    target, objs = rendered
    dep, svc, hpa, pdb = (objs[k] for k in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"))
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert (hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"]) == \
        ("Deployment", dep["metadata"]["name"])
    assert "replicas" not in dep["spec"], "the HPA owns replicas; apply must not reset them"
    assert hpa["spec"]["minReplicas"] >= (2 if target != "overlays/dev" else 1)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert len({o["metadata"].get("namespace") for o in objs.values()}) == 1
    if "ServiceMonitor" in objs:
        sm = objs["ServiceMonitor"]
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert [e["port"] for e in sm["spec"]["endpoints"]] == [p["name"] for p in svc["spec"]["ports"]]
        assert [e["path"] for e in sm["spec"]["endpoints"]] == ["/metrics"]


# -- agreement with the code --------------------------------------------------------------------------------------

def server_container(dep: dict) -> dict:
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "router"]
    return c


def serve_config_of(objs: dict, tmp_path: Path, api_keys_file: str | None = None):
    """The ServeConfig the pod runs: its args parsed by the server's own CLI, --config = the rendered ConfigMap."""
    from aco_bert.config import flag_values
    from aco_bert.serve.__main__ import build_cli
    from aco_bert.serve.config import ServeConfig, load_serve_config

    c = server_container(objs["Deployment"])
    assert c["command"] == ["python", "-m", "aco_bert.serve"]
    ns = vars(build_cli().parse_args(c["args"]))  # an unknown flag exits (SystemExit) here
    bundle, config_path = ns.pop("bundle"), ns.pop("config")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in objs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    cm_mount = mounts[str(Path(config_path).parent)]
    assert vols[cm_mount["name"]]["configMap"]["name"] == objs["ConfigMap"]["metadata"]["name"]
    text = objs["ConfigMap"]["data"][Path(config_path).name]
    local = tmp_path / "serve.yaml"
    data = yaml.safe_load(text)
    if api_keys_file is not None:
        data["api_keys_file"] = api_keys_file
    local.write_text(yaml.safe_dump(data))
    cfg = load_serve_config(local, flag_values(ServeConfig, ns), environ={})
    return cfg, bundle, data, mounts, vols


def test_args_and_config_are_what_the_server_accepts(rendered, tmp_path):
    target, objs = rendered
    dep = objs["Deployment"]
    c = server_container(dep)
    cfg, bundle, data, mounts, vols = serve_config_of(objs, tmp_path)
    assert cfg.host == "0.0.0.0", "the default 127.0.0.1 is unreachable from the Service"
    (port,) = c["ports"]
    assert cfg.port == port["containerPort"]
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(cfg.port)
    assert objs["Service"]["spec"]["ports"][0]["targetPort"] in (port["name"], cfg.port)
    assert cfg.workers <= float(c["resources"]["requests"]["cpu"]), "one worker per requested core at most"
    assert cfg.ort_threads == 1, "ORT's default thread count is the node's cores, not the pod's"
    keys = mounts[str(Path(cfg.api_keys_file).parent)]
    assert keys["readOnly"] and "secret" in vols[keys["name"]]
    if cfg.upstreams:
        env = {e["name"] for e in c.get("env", [])}
        assert {u.api_key_env for u in cfg.upstreams.values() if u.api_key_env} <= env
    # the bundle: a read-only volume filled by the init container, or baked into the image at that path
    if bundle in mounts:
        m = mounts[bundle]
        assert m["readOnly"]
        (init,) = dep["spec"]["template"]["spec"]["initContainers"]
        assert [x["name"] for x in init["volumeMounts"]] == [m["name"]]
        assert split_image(init["image"])[0] == "aco-bert-bundle"
    else:
        assert "initContainers" not in dep["spec"]["template"]["spec"]
        assert split_image(c["image"])[0] == "aco-bert-serve-bundled"
        assert f"COPY --from=bundle --chown=10001:10001 . {bundle}" in dockerfile_stages()["serve-bundled"]


def test_pod_security_resources_and_shutdown(rendered):
    target, objs = rendered
    spec = objs["Deployment"]["spec"]["template"]["spec"]
    c = server_container(objs["Deployment"])
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == dockerfile_uid()
    for x in pod_containers(objs["Deployment"]):
        assert x["securityContext"]["readOnlyRootFilesystem"] is True
        assert x["securityContext"]["allowPrivilegeEscalation"] is False
        assert split_image(x["image"])[1], f"{x['name']}: untagged image"
        assert split_image(x["image"])[0] in IMAGE_TARGETS
    tmp = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}["/tmp"]  # TMPDIR: the multiproc metrics dir
    assert "emptyDir" in {v["name"]: v for v in spec["volumes"]}[tmp]
    assert {"name": "TMPDIR", "value": "/tmp"} in c["env"]
    res = c["resources"]
    assert res["requests"]["memory"] == res["limits"]["memory"]
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[0] == "sleep" and int(pre[1]) + 20 <= spec["terminationGracePeriodSeconds"]


def test_probe_and_scrape_paths_are_routes_that_answer_as_probes_expect(rendered, tmp_path):
    """The app itself (no bundle: its loader fails) with the pod's own config and a configured client key:
    liveness 200, readiness 503 until a bundle is loaded, /metrics scrapeable without a key, the API is not."""
    from fastapi.testclient import TestClient

    from aco_bert.serve.app import create_app
    from aco_bert.serve.auth import hash_key

    target, objs = rendered
    dep = objs["Deployment"]
    c = server_container(dep)
    keys = tmp_path / "api_keys.txt"
    keys.write_text(hash_key("client-key") + "\n")
    cfg, *_ = serve_config_of(objs, tmp_path, api_keys_file=str(keys))

    def no_bundle():
        raise OSError("no bundle in this test")

    app = create_app(loader=no_bundle, config=cfg)
    routes = {r.path for r in app.routes}
    probes = {k: c[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    scrape = dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
    assert {p["path"] for p in probes.values()} | {scrape} <= routes
    assert all(p["port"] in (c["ports"][0]["name"], cfg.port) for p in probes.values())
    with TestClient(app) as client:
        live = client.get(probes["livenessProbe"]["path"])
        assert live.status_code == 200
        for _ in range(100):  # the loader thread fails at once; wait for it to record the error
            ready = client.get(probes["readinessProbe"]["path"])
            if ready.json()["error"] != "bundle is still loading":
                break
        assert ready.status_code == 503 and "no bundle in this test" in ready.json()["error"]
        assert client.get(probes["startupProbe"]["path"]).status_code == 503
        assert client.get(scrape).status_code == 200 and "aco_ready" in client.get(scrape).text
        assert client.post("/v1/route", json={"prompt": "x"}).status_code == 401
        assert client.post("/v1/route", json={"prompt": "x"},
                           headers={"Authorization": "Bearer client-key"}).status_code == 503  # not ready


# -- the image ----------------------------------------------------------------------------------------------------

def dockerfile_stages() -> dict[str, str]:
    """Stage name -> its instructions (continuation lines joined), comments dropped."""
    lines = [ln for ln in DOCKERFILE.read_text().replace("\\\n", " ").splitlines() if ln.strip()
             and not ln.lstrip().startswith("#")]
    stages: dict[str, list[str]] = {}
    for ln in lines:
        if ln.upper().startswith("FROM "):
            name = ln.split()[-1] if " AS " in ln.upper() else f"stage{len(stages)}"
            stages[name] = []
        stages[list(stages)[-1]].append(" ".join(ln.split()))
    return {k: "\n".join(v) for k, v in stages.items()}


def dockerfile_uid() -> int:
    users = [ln.split()[1] for ln in dockerfile_stages()["serve"].splitlines() if ln.startswith("USER ")]
    return int(users[-1].split(":")[0])


def test_dockerfile_installs_serve_extra_only_and_runs_non_root():
    stages = dockerfile_stages()
    assert set(IMAGE_TARGETS.values()) <= set(stages)
    serve = stages["serve"]
    assert serve.splitlines()[0].startswith("FROM python:3.") and "-slim" in serve.splitlines()[0]
    installs = [ln for ln in serve.splitlines() if "pip install" in ln]
    assert len(installs) == 1 and 'pip install ".[serve]"' in installs[0]
    assert "torch" not in installs[0].split("&&")[0]
    assert dockerfile_uid() != 0
    for name in ("bundle-image", "serve-bundled"):  # every stage ends as the same non-root user
        users = [ln for ln in stages[name].splitlines() if ln.startswith("USER ")]
        assert name == "serve-bundled" or users == [f"USER {dockerfile_uid()}:{dockerfile_uid()}"]
    assert 'ENTRYPOINT ["python", "-m", "aco_bert.serve"]' in serve
    assert "EXPOSE 8000" in serve
    # `.[serve]` really is torch-free: neither the base dependencies nor the serve extra name torch/transformers
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = meta["dependencies"] + meta["optional-dependencies"]["serve"]
    assert not [d for d in deps if d.split(">")[0].split("=")[0].split("[")[0].strip() in ("torch", "transformers")]
    # the build context: sources in, the virtualenv, checkpoints (bundles arrive via --build-context) and git out
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert {".git", ".venv", "checkpoints"} <= ignored
    copied = {p for ln in serve.splitlines() if ln.startswith("COPY ") for p in ln.split()[1:-1]}
    assert {"pyproject.toml", "README.md", "aco_bert"} <= copied and not copied & ignored
