"""Uploads one file with tuspy, the stock Python tus client, resuming from
its URL store when an earlier run was cut off. Prints the offset and the
upload's URL after each PATCH, and `DONE URL` at the end.

    python tuspy_upload.py ENDPOINT TOKEN FILE URL_STORE CHUNK_SIZE
"""
import os
import sys

from tusclient import client
from tusclient.storage import filestorage


def main() -> None:
    endpoint, token, path, store, chunk = sys.argv[1:6]
    tus = client.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"})
    uploader = tus.uploader(
        file_path=path,
        chunk_size=int(chunk),
        store_url=True,
        url_storage=filestorage.FileStorage(store),
        metadata={"filename": os.path.basename(path)},
        # A restart right after a crash may find the crashed PATCH still
        # holding the upload (423) for the moment the server takes to see
        # its connection gone: try again, as tus-js-client does by default.
        retries=5,
        retry_delay=1,
    )
    size = uploader.get_file_size()
    while uploader.offset < size:
        uploader.upload_chunk()
        print("OFFSET", uploader.offset, uploader.url, flush=True)
    print("DONE", uploader.url, flush=True)


if __name__ == "__main__":
    main()
