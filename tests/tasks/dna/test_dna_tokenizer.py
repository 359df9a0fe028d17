"""DNA tokenizer: HyenaDNA/Caduceus ids, soft-masked and IUPAC letters, invalid characters, reverse complement."""
import numpy as np
import pytest
import torch

from mambaseq.tasks.dna.tokenizer import (
    COMPLEMENT,
    PAD_ID,
    UNK_ID,
    VOCAB,
    DNATokenizer,
    InvalidSequenceError,
    reverse_complement,
)


def test_ids_match_hyenadna_and_caduceus():
    expected = {"[CLS]": 0, "[SEP]": 1, "[BOS]": 2, "[MASK]": 3, "[PAD]": 4, "[RESERVED]": 5, "[UNK]": 6,
                "A": 7, "C": 8, "G": 9, "T": 10, "N": 11}
    assert VOCAB == expected
    ids = DNATokenizer().encode("ACGTN")
    assert ids.dtype == np.uint8
    assert ids.tolist() == [7, 8, 9, 10, 11]


def test_soft_masked_bases_read_as_uppercase():
    tokenizer = DNATokenizer()
    assert tokenizer.encode("acgtnACGTN").tolist() == tokenizer.encode("ACGTNACGTN").tolist()
    assert tokenizer.encode(b"gattaca").tolist() == tokenizer.encode("GATTACA").tolist()
    assert tokenizer.counts["iupac"] == 0


def test_iupac_codes_become_n_and_are_counted():
    tokenizer = DNATokenizer()
    ids = tokenizer.encode("ARYSWKMBDHVryT")
    assert ids.tolist() == [VOCAB["A"]] + [VOCAB["N"]] * 12 + [VOCAB["T"]]
    assert tokenizer.counts["iupac"] == 12


def test_invalid_character_error_names_source_record_and_position():
    tokenizer = DNATokenizer()
    with pytest.raises(InvalidSequenceError, match=r"genome\.fa, record 'chr2', position 1003: character 'X'"):
        tokenizer.encode("ACGXT", source="genome.fa", record="chr2", offset=1000)


def test_invalid_characters_replaced_by_unk_when_asked():
    tokenizer = DNATokenizer(on_invalid="replace")
    ids = tokenizer.encode("AC-G*T")
    assert ids.tolist() == [7, 8, UNK_ID, 9, UNK_ID, 10]
    assert tokenizer.counts["invalid"] == 2
    with pytest.raises(ValueError, match="on_invalid"):
        DNATokenizer(on_invalid="skip")


def test_encode_uint8_array_and_decode_round_trip():
    tokenizer = DNATokenizer()
    text = "GATTACANNACGT"
    ids = tokenizer.encode(np.frombuffer(text.encode(), dtype=np.uint8))
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(torch.from_numpy(ids.astype(np.int64))) == text


def test_reverse_complement_of_known_sequence():
    tokenizer = DNATokenizer()
    ids = tokenizer.encode("AACGTN")
    assert tokenizer.decode(reverse_complement(ids)) == "NACGTT"
    padded = np.concatenate([ids, [PAD_ID, PAD_ID]]).astype(np.int64)
    rc = reverse_complement(torch.from_numpy(padded)[None])
    assert rc.shape == (1, 8)
    assert rc[0, :2].tolist() == [PAD_ID, PAD_ID]
    assert tokenizer.decode(rc[0, 2:]) == "NACGTT"


def test_reverse_complement_is_an_involution_on_random_ids():
    generator = np.random.default_rng(0)
    ids = generator.integers(0, len(VOCAB), size=(4, 97))
    assert np.array_equal(reverse_complement(reverse_complement(ids)), ids)
    tensor = torch.from_numpy(ids)
    assert torch.equal(reverse_complement(tensor), torch.from_numpy(reverse_complement(ids)))
    assert np.array_equal(COMPLEMENT[COMPLEMENT], np.arange(len(COMPLEMENT)))
    specials = np.arange(7)
    assert np.array_equal(COMPLEMENT[specials], specials)
