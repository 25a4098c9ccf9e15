import tarfile, io, json, hashlib, gzip, os, subprocess
def tar_bytes(entries, fmt=tarfile.GNU_FORMAT):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode='w', format=fmt) as t:
        for e in entries:
            ti = tarfile.TarInfo(e['name']); ti.mtime = 1700000000
            ti.type = e.get('type', tarfile.REGTYPE); ti.mode = e.get('mode', 0o644)
            if 'link' in e: ti.linkname = e['link']
            if 'pax' in e: ti.pax_headers = e['pax']
            data = e.get('data', b'')
            if ti.type == tarfile.REGTYPE:
                ti.size = len(data); t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    return b.getvalue()
layer = tar_bytes([
    {'name': 'etc', 'type': tarfile.DIRTYPE, 'mode': 0o755},
    {'name': 'etc/hostname', 'data': b'fuzz\n'},
    {'name': 'etc/.wh.gone'},
    {'name': 'usr/bin', 'type': tarfile.DIRTYPE, 'mode': 0o755},
    {'name': 'usr/bin/sh', 'data': b'#!/bin/true\n', 'mode': 0o755},
    {'name': 'usr/bin/ash', 'type': tarfile.LNKTYPE, 'link': 'usr/bin/sh'},
    {'name': 'bin', 'type': tarfile.SYMTYPE, 'link': 'usr/bin'},
    {'name': 'var/.wh..wh..opq'},
    {'name': 'var/log', 'type': tarfile.DIRTYPE, 'mode': 0o755},
    {'name': 'dev/null', 'type': tarfile.CHRTYPE, 'mode': 0o666},
    {'name': 'usr/bin/ping', 'data': b'x', 'mode': 0o4755,
     'pax': {'SCHILY.xattr.security.capability': '\x01\x00\x00\x02'}},
], fmt=tarfile.PAX_FORMAT)
os.makedirs('seeds/layer_tar', exist_ok=True)
open('seeds/layer_tar/small.tar','wb').write(layer)
open('seeds/layer_tar/small.tar.gz','wb').write(gzip.compress(layer, mtime=0))
# zstd: Python has no zstd module before 3.14; the CLI writes the same frame.
subprocess.run(['zstd', '-q', '-f', '-19', 'seeds/layer_tar/small.tar', '-o', 'seeds/layer_tar/small.tar.zst'], check=True)
sha = lambda b: hashlib.sha256(b).hexdigest()
def config(diff):
    return json.dumps({"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"],"Env":["PATH=/usr/bin"]},
        "rootfs":{"type":"layers","diff_ids":["sha256:"+diff]}}).encode()
# OCI archive: gzip layer
gz = gzip.compress(layer, mtime=0); cfg = config(sha(layer))
man = json.dumps({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
  "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:"+sha(cfg),"size":len(cfg)},
  "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:"+sha(gz),"size":len(gz)}]}).encode()
idx = json.dumps({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
  "digest":"sha256:"+sha(man),"size":len(man),"annotations":{"org.opencontainers.image.ref.name":"latest"},
  "platform":{"architecture":"amd64","os":"linux"}}]}).encode()
oci = [{'name':'oci-layout','data':b'{"imageLayoutVersion":"1.0.0"}'},{'name':'index.json','data':idx},
       {'name':'blobs','type':tarfile.DIRTYPE,'mode':0o755},{'name':'blobs/sha256','type':tarfile.DIRTYPE,'mode':0o755}]
for b in (gz,cfg,man): oci.append({'name':'blobs/sha256/'+sha(b),'data':b})
os.makedirs('seeds/oci_archive', exist_ok=True)
open('seeds/oci_archive/small.tar','wb').write(tar_bytes(oci, fmt=tarfile.USTAR_FORMAT))
# docker archive: plain layer
cfg = config(sha(layer))
dm = json.dumps([{"Config":sha(cfg)+".json","RepoTags":["fuzz:latest"],"Layers":[sha(layer)+"/layer.tar"]}]).encode()
dk = [{'name':'manifest.json','data':dm},{'name':sha(cfg)+'.json','data':cfg},
      {'name':sha(layer),'type':tarfile.DIRTYPE,'mode':0o755},{'name':sha(layer)+'/layer.tar','data':layer},
      {'name':'repositories','data':json.dumps({"fuzz":{"latest":sha(layer)}}).encode()}]
os.makedirs('seeds/docker_archive', exist_ok=True)
open('seeds/docker_archive/small.tar','wb').write(tar_bytes(dk, fmt=tarfile.USTAR_FORMAT))
