"""A small deterministic text task for the text, CLI and server tests: short product-like
queries, each drawn from the words of its label (plus shared filler words), so a model that
reads the words learns it in a few epochs."""

import contextlib
import http.client
import socket
import subprocess
import sys
import time

import numpy as np

_WORDS = {
    "shoes": "shoe shoes sneaker boots running leather heel sole lace trainers",
    "hats": "hat cap beanie brim wool winter sun straw fedora visor",
    "editor": "editor vim emacs text syntax highlighting code programmers nano buffer",
    "viewer": "image viewer photo picture gallery thumbnails jpeg png zoom slideshow",
    "audio": "audio music player sound mp3 playlist volume speakers mixer stereo",
    "games": "game strategy puzzle arcade chess board player levels score multiplayer",
    "network": "network tcp packet ping router firewall dns socket traffic bandwidth",
    "fonts": "font typeface serif sans glyphs unicode truetype bold italic family",
}
_FILLER = "for the a with and of new tool free small fast simple".split()
LABELS = sorted(_WORDS)


def make_texts(n, seed=0, multi=False):
    """(texts, labels): ``n`` texts; labels one name per text, or with ``multi`` a list of one or
    two names."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        picked = [LABELS[rng.integers(len(LABELS))]]
        if multi and rng.random() < 0.4:
            other = LABELS[rng.integers(len(LABELS))]
            if other != picked[0]:
                picked.append(other)
        words = []
        for lab in picked:
            vocab = _WORDS[lab].split()
            words += [vocab[i] for i in rng.integers(len(vocab), size=3)]
        words += [_FILLER[i] for i in rng.integers(len(_FILLER), size=2)]
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize())
        labels.append(picked if multi else picked[0])
    return texts, labels


@contextlib.contextmanager
def slide_server(model_file, *flags):
    """A `slide serve MODEL` process on a free loopback port: yields (port, process), stops it after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "slide.cli", "serve", str(model_file), "--port", str(port), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    proc.kill()
                    raise RuntimeError("slide serve did not start: " + proc.stdout.read()) from None
                time.sleep(0.2)
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
