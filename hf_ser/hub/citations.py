"""What a model card says about the corpora and the methods a run used: facts per corpus and BibTeX entries."""

CORPUS_INFO = {
    "emodb": {
        "acted": True,
        "name": "EmoDB (Berlin Database of Emotional Speech)",
        "language": "de",
        "facts": "acted German speech: 10 actors (5 female, 5 male) read 10 everyday sentences in 7 emotions, "
        "recorded in an anechoic chamber",
        "bibtex": "@inproceedings{burkhardt2005emodb,\n  title = {A Database of German Emotional Speech},\n  author = "
        "{Burkhardt, Felix and Paeschke, Astrid and Rolfes, Miriam and Sendlmeier, Walter F. and Weiss, "
        "Benjamin},\n  booktitle = {Proc. Interspeech 2005},\n  pages = {1517--1520},\n  year = {2005}\n}",
    },
    "ravdess": {
        "acted": True,
        "name": "RAVDESS",
        "language": "en",
        "facts": "acted North-American English speech: 24 actors (12 female, 12 male) say two fixed sentences",
        "bibtex": "@article{livingstone2018ravdess,\n  title = {The Ryerson Audio-Visual Database of Emotional Speech and "
        "Song (RAVDESS): A dynamic, multimodal set of facial and vocal expressions in North American "
        "English},\n  author = {Livingstone, Steven R. and Russo, Frank A.},\n  journal = {PLoS ONE},\n  "
        "volume = {13},\n  number = {5},\n  pages = {e0196391},\n  year = {2018}\n}",
    },
    "iemocap": {
        "acted": True,
        "name": "IEMOCAP",
        "language": "en",
        "facts": "English dyadic conversations of 10 actors in 5 sessions, scripted and improvised, labelled by "
        "annotator majority",
        "bibtex": "@article{busso2008iemocap,\n  title = {IEMOCAP: Interactive emotional dyadic motion capture "
        "database},\n  author = {Busso, Carlos and Bulut, Murtaza and Lee, Chi-Chun and Kazemzadeh, Abe "
        "and Mower, Emily and Kim, Samuel and Chang, Jeannette N. and Lee, Sungbok and Narayanan, "
        "Shrikanth S.},\n  journal = {Language Resources and Evaluation},\n  volume = {42},\n  number = "
        "{4},\n  pages = {335--359},\n  year = {2008}\n}",
    },
    "crema_d": {
        "acted": True,
        "name": "CREMA-D",
        "language": "en",
        "facts": "acted English speech: 91 actors of varied age and ethnicity say 12 sentences in 6 emotions",
        "bibtex": "@article{cao2014cremad,\n  title = {CREMA-D: Crowd-sourced Emotional Multimodal Actors Dataset},\n"
        "  author = {Cao, Houwei and Cooper, David G. and Keutmann, Michael K. and Gur, Ruben C. and "
        "Nenkova, Ani and Verma, Ragini},\n  journal = {IEEE Transactions on Affective Computing},\n  "
        "volume = {5},\n  number = {4},\n  pages = {377--390},\n  year = {2014}\n}",
    },
    "demo": {
        "name": "hf-ser demo corpus (generated, synthetic)",
        "language": None,
        "facts": "hf-ser's generated smoke corpus: synthetic speech-like signals, not speech. This model recognises "
        "no real emotion; it only shows that the pipeline learns",
        "bibtex": None,
    },
}

BACKBONE_CITATIONS = {
    "wav2vec2": (
        "wav2vec 2.0 (Baevski et al., 2020)",
        "@inproceedings{baevski2020wav2vec,\n  title = {wav2vec 2.0: A Framework for Self-Supervised Learning "
        "of Speech Representations},\n  author = {Baevski, Alexei and Zhou, Henry and Mohamed, Abdelrahman "
        "and Auli, Michael},\n  booktitle = {Advances in Neural Information Processing Systems},\n  volume = "
        "{33},\n  pages = {12449--12460},\n  year = {2020}\n}",
    ),
    "hubert": (
        "HuBERT (Hsu et al., 2021)",
        "@article{hsu2021hubert,\n  title = {HuBERT: Self-Supervised Speech Representation Learning by Masked "
        "Prediction of Hidden Units},\n  author = {Hsu, Wei-Ning and Bolte, Benjamin and Tsai, Yao-Hung Hubert "
        "and Lakhotia, Kushal and Salakhutdinov, Ruslan and Mohamed, Abdelrahman},\n  journal = {IEEE/ACM "
        "Transactions on Audio, Speech, and Language Processing},\n  volume = {29},\n  pages = {3451--3460},\n"
        "  year = {2021}\n}",
    ),
    "wavlm": (
        "WavLM (Chen et al., 2022)",
        "@article{chen2022wavlm,\n  title = {WavLM: Large-Scale Self-Supervised Pre-Training for Full Stack "
        "Speech Processing},\n  author = {Chen, Sanyuan and Wang, Chengyi and Chen, Zhengyang and Wu, Yu and "
        "others},\n  journal = {IEEE Journal of Selected Topics in Signal Processing},\n  volume = {16},\n  "
        "number = {6},\n  pages = {1505--1518},\n  year = {2022}\n}",
    ),
    "data2vec-audio": (
        "data2vec (Baevski et al., 2022)",
        "@inproceedings{baevski2022data2vec,\n  title = {data2vec: A General Framework for "
        "Self-supervised Learning in Speech, Vision and Language},\n  author = {Baevski, Alexei and "
        "Hsu, Wei-Ning and Xu, Qiantong and Babu, Arun and Gu, Jiatao and Auli, Michael},\n  booktitle "
        "= {Proceedings of the 39th International Conference on Machine Learning},\n  pages = "
        "{1298--1312},\n  year = {2022}\n}",
    ),
    "whisper": (
        "Whisper (Radford et al., 2023)",
        "@inproceedings{radford2023whisper,\n  title = {Robust Speech Recognition via Large-Scale Weak "
        "Supervision},\n  author = {Radford, Alec and Kim, Jong Wook and Xu, Tao and Brockman, Greg and "
        "McLeavey, Christine and Sutskever, Ilya},\n  booktitle = {Proceedings of the 40th International "
        "Conference on Machine Learning},\n  pages = {28492--28518},\n  year = {2023}\n}",
    ),
}
HEAD_FUSION_CITATION = (
    'the "Base" CNN with head-fusion attention (Xu et al., IEEE Access 2021)',
    "@article{xu2021headfusion,\n  title = {Head Fusion: Improving the Accuracy and Robustness of Speech Emotion "
    "Recognition on the IEMOCAP and RAVDESS Dataset},\n  author = {Xu, Mingke and Zhang, Fan and Zhang, Wei},\n  "
    "journal = {IEEE Access},\n  volume = {9},\n  pages = {74539--74549},\n  year = {2021}\n}",
)
LORA_CITATION = (
    "LoRA (Hu et al., 2022), the adapter method",
    "@inproceedings{hu2022lora,\n  title = {LoRA: Low-Rank Adaptation of Large Language Models},\n  author = {Hu, "
    "Edward J. and Shen, Yelong and Wallis, Phillip and Allen-Zhu, Zeyuan and Li, Yuanzhi and Wang, Shean and Wang, "
    "Lu and Chen, Weizhu},\n  booktitle = {International Conference on Learning Representations},\n  year = {2022}\n}",
)
