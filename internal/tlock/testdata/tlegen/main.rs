// Generator of ../tle-vectors.txt (see Cargo.toml for how it is built): it
// drives ideal-lab5/timelock's tle crate (rev 5416406, the revision subtensor
// pins) exactly as
// bittensor-drand's encrypt_and_compress and subtensor's
// reveal_crv3_commits_for_subnet do.
use ark_ec::Group;
use ark_ff::PrimeField;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::Digest;
use tle::{
    curves::drand::TinyBLS381,
    ibe::fullident::Identity,
    stream_ciphers::AESGCMStreamCipherProvider,
    tlock::{tld, tle, TLECiphertext},
};
use w3f_bls::EngineBLS;

type E = TinyBLS381;

fn identity(round: u64) -> Identity {
    let mut h = sha2::Sha256::new();
    h.update(round.to_be_bytes());
    Identity::new(b"", vec![h.finalize().to_vec()])
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a[1].as_str() {
        // enc PK_HEX ROUND PLAINTEXT_HEX SEED
        "enc" => {
            let pk = <E as EngineBLS>::PublicKeyGroup::deserialize_compressed(&*hex::decode(&a[2]).unwrap()).unwrap();
            let round: u64 = a[3].parse().unwrap();
            let pt = hex::decode(&a[4]).unwrap();
            let mut rng = ChaCha20Rng::seed_from_u64(a[5].parse().unwrap());
            let mut esk = [0u8; 32];
            rng.fill_bytes(&mut esk);
            let ct = tle::<E, AESGCMStreamCipherProvider, ChaCha20Rng>(pk, esk, &pt, identity(round), rng).unwrap();
            let mut out = Vec::new();
            ct.serialize_compressed(&mut out).unwrap();
            println!("{}", hex::encode(out));
        }
        // dec CT_HEX SIG_HEX  (subtensor's reveal path)
        "dec" => {
            let ctb = hex::decode(&a[2]).unwrap();
            let ct = match TLECiphertext::<E>::deserialize_compressed(&mut &ctb[..]) {
                Ok(c) => c,
                Err(e) => { println!("ERR deserialize: {e:?}"); return; }
            };
            let sb = hex::decode(&a[3]).unwrap();
            let sig = match <E as EngineBLS>::SignatureGroup::deserialize_compressed(&mut &sb[..]) {
                Ok(s) => s,
                Err(e) => { println!("ERR signature: {e:?}"); return; }
            };
            match tld::<E, AESGCMStreamCipherProvider>(ct, sig) {
                Ok(pt) => println!("{}", hex::encode(pt)),
                Err(e) => println!("ERR decrypt: {e:?}"),
            }
        }
        // gt SIG_HEX U_HEX: arkworks' compressed serialisation of e(sig, u)
        "gt" => {
            let s = <E as EngineBLS>::SignatureGroup::deserialize_compressed(&*hex::decode(&a[2]).unwrap()).unwrap();
            let u = <E as EngineBLS>::PublicKeyGroup::deserialize_compressed(&*hex::decode(&a[3]).unwrap()).unwrap();
            let g = E::pairing(u, s);
            let mut out = Vec::new();
            g.serialize_compressed(&mut out).unwrap();
            println!("{}", hex::encode(out));
        }
        // hash ROUND: the round's identity hashed to G1, compressed
        "hash" => {
            let q = identity(a[2].parse().unwrap()).public::<E>();
            let mut out = Vec::new();
            q.serialize_compressed(&mut out).unwrap();
            println!("{}", hex::encode(out));
        }
        // sign SK_BE_HEX ROUND: IBE extract (a beacon signature) and the public key
        "sign" => {
            let sk = <E as EngineBLS>::Scalar::from_be_bytes_mod_order(&hex::decode(&a[2]).unwrap());
            let sig = identity(a[3].parse().unwrap()).extract::<E>(sk).0;
            let pk = <E as EngineBLS>::PublicKeyGroup::generator() * sk;
            let (mut so, mut po) = (Vec::new(), Vec::new());
            sig.serialize_compressed(&mut so).unwrap();
            pk.serialize_compressed(&mut po).unwrap();
            println!("{} {}", hex::encode(so), hex::encode(po));
        }
        _ => panic!("unknown command"),
    }
}
