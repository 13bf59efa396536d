# From the Python 3.11 documentation, Doc/library/hashlib.rst, line 676.
# allow: base64 hashlib
from hashlib import blake2b
FILES_HASH_PERSON = b'MyApp Files Hash'
BLOCK_HASH_PERSON = b'MyApp Block Hash'
h = blake2b(digest_size=32, person=FILES_HASH_PERSON)
if (_ := h.update(b'the same content')) is not None:
    print(repr(_))
if (_ := h.hexdigest()) is not None:
    print(repr(_))
h = blake2b(digest_size=32, person=BLOCK_HASH_PERSON)
if (_ := h.update(b'the same content')) is not None:
    print(repr(_))
if (_ := h.hexdigest()) is not None:
    print(repr(_))
from hashlib import blake2s
from base64 import b64decode, b64encode
orig_key = b64decode(b'Rm5EPJai72qcK3RGBpW3vPNfZy5OZothY+kHY6h21KM=')
enc_key = blake2s(key=orig_key, person=b'kEncrypt').digest()
mac_key = blake2s(key=orig_key, person=b'kMAC').digest()
if (_ := print(b64encode(enc_key).decode('utf-8'))) is not None:
    print(repr(_))
if (_ := print(b64encode(mac_key).decode('utf-8'))) is not None:
    print(repr(_))
