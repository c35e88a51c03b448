#!/usr/bin/env python3
"""Baseline of the CRM CSV case of bench/run.sh.

A plain Python csv script that does what an administrator would script by
hand: read the Windows-1252 ';' CRM export, map its columns onto the Control
Hub template and write the import file (UTF-8, ','). It does no phone
normalisation, no validation, no state and no diff: the floor of "just
convert the file".

    python3 bench/baseline_csv.py drop.csv out.csv
"""
import csv
import sys

HEADER = [
    "Display Name", "Contact UUID", "First Name", "Last Name",
    "Phone Number 1", "Phone Number 1 Type", "Phone Number 2", "Phone Number 2 Type",
    "Phone Number 3", "Phone Number 3 Type", "Phone Number 4", "Phone Number 4 Type",
    "Phone Number 5", "Phone Number 5 Type", "Contact Email", "SIP URI", "Title",
    "Company Name", "Address Street", "Address City", "Address State",
    "Address Country", "Address Zip",
    "Group ID 1", "Group ID 2", "Group ID 3", "Group ID 4", "Group ID 5",
]


def main(src, dst):
    with open(src, newline="", encoding="cp1252") as fin, \
            open(dst, "w", newline="", encoding="utf-8") as fout:
        r = csv.DictReader(fin, delimiter=";")
        w = csv.writer(fout)
        w.writerow(HEADER)
        for row in r:
            first, last, company = row["Contact first name"], row["Contact last name"], row["Company"]
            phone, mobile = row["Phone"], row["Mobile"]
            w.writerow([
                f"{first} {last} ({company})", "", first, last,
                phone, "work" if phone else "", mobile, "mobile" if mobile else "",
                "", "", "", "", "", "", row["Email"], "", row["Job title"],
                company, row["Street"], row["City"], "", row["Country"], row["Postcode"],
                "", "", "", "", "",
            ])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: baseline_csv.py DROP.csv OUT.csv")
    main(sys.argv[1], sys.argv[2])
